/* espgate's C surface over DPDK: wrappers for DPDK's static inline
 * functions (which bindgen cannot bind) and a one-call port set-up (which
 * keeps rte_eth_conf's unions out of Rust). */
#ifndef ESPGATE_DPDK_SHIM_H
#define ESPGATE_DPDK_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

int espgate_errno(void);
/* Where an mbuf's single segment lies: its buffer, the buffer's size, and
 * the frame's offset and length in it. Rust works on the frame through
 * this view and writes offset and length back when it sends the mbuf. */
struct espgate_view {
    uint8_t *base;
    uint16_t room;
    uint16_t off;
    uint16_t len;
};

/* rte_eth_rx_burst, with the view of each mbuf received. Multi-segment
 * frames are not produced by the PMDs espgate configures (no scatter, no
 * LRO); a view covers the first segment. */
uint16_t espgate_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                struct espgate_view *views, uint16_t n);
/* n fresh mbufs with their views, or none (non-zero return). */
int espgate_mbuf_alloc_views(struct rte_mempool *pool, struct rte_mbuf **mbufs,
                             struct espgate_view *views, unsigned int n);
/* Writes each view's offset and length into its mbuf (one segment, no
 * offload flags) and calls rte_eth_tx_burst. */
uint16_t espgate_tx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                const struct espgate_view *views, uint16_t n);
void espgate_mbuf_free(struct rte_mbuf *m);
void espgate_mbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n);
/* Gives the calling thread an lcore id (and so the mempool's per-lcore
 * cache); 0 on success. */
int espgate_thread_register(void);
void espgate_thread_unregister(void);
int espgate_port_setup(uint16_t port, uint16_t queues, uint16_t descriptors, struct rte_mempool *pool);
int espgate_port_mac(uint16_t port, uint8_t mac[6]);
/* 1 if the port's link is up, 0 if down, negative on error; never waits
 * (rte_eth_link_get_nowait). */
int espgate_port_link_up(uint16_t port);

#endif
