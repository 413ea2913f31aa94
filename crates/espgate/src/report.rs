//! Printing what a node did.

use espgate_dataplane::NodeReport;

/// Prints a node's counters, SAs and burst latency.
pub fn print(r: &NodeReport) -> anyhow::Result<()> {
    let t = r.totals();
    outln!(
        "node {}: rx {} tx {} | encrypted {} decrypted {} bypassed {} | handoffs {} | arp replies {} requests {} | icmp errors {} | punted {} punt_sent {} | redirected {} held {}",
        r.name,
        t.rx,
        t.tx,
        t.encrypted,
        t.decrypted,
        t.bypassed,
        t.handoff_out,
        t.arp_replies,
        t.arp_requests,
        t.icmp_errors,
        t.punted,
        t.punt_sent,
        t.redirected,
        t.held
    )?;
    let drops: Vec<String> = t.nonzero_drops().map(|(d, n)| format!("{d} {n}")).collect();
    if !drops.is_empty() {
        outln!("  drops: {}", drops.join(", "))?;
    }
    if let Some(m) = &r.mirror {
        let s = m.stats;
        outln!(
            "  mirror: sent {} frames {} bytes ({} states, {} acks) | received {} | taken over {} handed back {} | standby {} SAs | progress {} | tx full {} not mirror {}",
            s.frames_sent,
            s.bytes_sent,
            s.states_sent,
            s.acks_sent,
            s.frames_received,
            s.taken_over,
            s.handed_back,
            m.standby,
            m.progress,
            m.tx_full,
            m.not_mirror
        )?;
        let rejected: Vec<String> = espgate_mirror::Reject::ALL
            .iter()
            .filter(|w| m.rejected.get(**w) > 0)
            .map(|w| format!("{w} {}", m.rejected.get(*w)))
            .collect();
        if !rejected.is_empty() {
            outln!("  mirror rejected: {}", rejected.join(", "))?;
        }
    }
    let mut out: Vec<_> = r.outbound().into_iter().collect();
    out.sort_by_key(|(spi, _)| *spi);
    for (spi, (c, seq)) in out {
        outln!(
            "  out sa {spi:#010x}: {} packets {} bytes, last seq {seq}{}",
            c.packets,
            c.bytes,
            drop_list(&c.drops)
        )?;
    }
    let mut inb: Vec<_> = r.inbound().into_iter().collect();
    inb.sort_by_key(|(spi, _)| *spi);
    for (spi, (c, top)) in inb {
        outln!(
            "  in  sa {spi:#010x}: {} packets {} bytes, window top {top}{}",
            c.packets,
            c.bytes,
            drop_list(&c.drops)
        )?;
    }
    for w in &r.workers {
        let h = &w.burst_ns;
        if !h.is_empty() {
            outln!(
                "  worker {}: {} bursts timed, processing per burst p50 {} ns, p99 {} ns, max {} ns",
                w.id,
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max()
            )?;
        }
        for (port, q) in &w.queues {
            if q.rx_too_long + q.rx_csum_completed > 0 {
                println!(
                    "  worker {} port {port}: checksums completed {}, too long {}",
                    w.id, q.rx_csum_completed, q.rx_too_long
                );
            }
        }
        let sad: Vec<String> = w
            .sad_drops
            .nonzero()
            .map(|(d, n)| format!("{d} {n}"))
            .collect();
        if !sad.is_empty() {
            outln!("  worker {} drops before any SA: {}", w.id, sad.join(", "))?;
        }
    }
    Ok(())
}

fn drop_list(d: &espgate_esp::DropCounters) -> String {
    let v: Vec<String> = d.nonzero().map(|(r, n)| format!("{r} {n}")).collect();
    if v.is_empty() {
        String::new()
    } else {
        format!(", drops: {}", v.join(", "))
    }
}
