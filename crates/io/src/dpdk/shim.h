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
uint16_t espgate_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t espgate_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
int espgate_mbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int n);
void espgate_mbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n);
/* Gives the calling thread an lcore id (and so the mempool's per-lcore
 * cache); 0 on success. */
int espgate_thread_register(void);
void espgate_thread_unregister(void);
const uint8_t *espgate_mbuf_data(const struct rte_mbuf *m, uint32_t *len);
uint8_t *espgate_mbuf_append(struct rte_mbuf *m, uint16_t len);
int espgate_port_setup(uint16_t port, uint16_t queues, uint16_t descriptors, struct rte_mempool *pool);
int espgate_port_mac(uint16_t port, uint8_t mac[6]);

#endif
