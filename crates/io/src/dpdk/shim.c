/* See shim.h. */
#include "shim.h"

int espgate_errno(void) { return rte_errno; }

static inline void view_of(const struct rte_mbuf *m, struct espgate_view *v) {
    v->base = (uint8_t *)m->buf_addr;
    v->room = m->buf_len;
    v->off = m->data_off;
    v->len = m->data_len;
}

uint16_t espgate_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                struct espgate_view *views, uint16_t n) {
    uint16_t got = rte_eth_rx_burst(port, queue, pkts, n);
    for (uint16_t i = 0; i < got; i++)
        view_of(pkts[i], &views[i]);
    return got;
}

int espgate_mbuf_alloc_views(struct rte_mempool *pool, struct rte_mbuf **mbufs,
                             struct espgate_view *views, unsigned int n) {
    int r = rte_pktmbuf_alloc_bulk(pool, mbufs, n);
    if (r != 0)
        return r;
    for (unsigned int i = 0; i < n; i++)
        view_of(mbufs[i], &views[i]);
    return 0;
}

uint16_t espgate_tx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
                                const struct espgate_view *views, uint16_t n) {
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = pkts[i];
        m->data_off = views[i].off;
        m->data_len = views[i].len;
        m->pkt_len = views[i].len;
        m->ol_flags = 0;
    }
    return rte_eth_tx_burst(port, queue, pkts, n);
}

void espgate_mbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void espgate_mbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n) { rte_pktmbuf_free_bulk(mbufs, n); }

int espgate_thread_register(void) { return rte_thread_register(); }

void espgate_thread_unregister(void) { rte_thread_unregister(); }

int espgate_port_setup(uint16_t port, uint16_t queues, uint16_t descriptors, struct rte_mempool *pool) {
    struct rte_eth_conf conf;
    struct rte_eth_dev_info info;
    int r;
    memset(&conf, 0, sizeof conf);
    r = rte_eth_dev_info_get(port, &info);
    if (r != 0)
        return r;
    if (queues > 1 && info.flow_type_rss_offloads != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IP & info.flow_type_rss_offloads;
    }
    r = rte_eth_dev_configure(port, queues, queues, &conf);
    if (r != 0)
        return r;
    for (uint16_t q = 0; q < queues; q++) {
        r = rte_eth_rx_queue_setup(port, q, descriptors, rte_eth_dev_socket_id(port), NULL, pool);
        if (r != 0)
            return r;
        r = rte_eth_tx_queue_setup(port, q, descriptors, rte_eth_dev_socket_id(port), NULL);
        if (r != 0)
            return r;
    }
    r = rte_eth_dev_start(port);
    if (r != 0)
        return r;
    /* Frames for the node's own MAC (when it differs from the device's)
     * and broadcast must come in. Not every PMD supports it. */
    rte_eth_promiscuous_enable(port);
    return 0;
}

int espgate_port_link_up(uint16_t port) {
    struct rte_eth_link link;
    int r = rte_eth_link_get_nowait(port, &link);
    if (r != 0)
        return r;
    return link.link_status == RTE_ETH_LINK_UP;
}

int espgate_port_mac(uint16_t port, uint8_t mac[6]) {
    struct rte_ether_addr a;
    int r = rte_eth_macaddr_get(port, &a);
    if (r == 0)
        memcpy(mac, a.addr_bytes, 6);
    return r;
}
