//! `espgate-bench`: runs the benchmark scenarios in one process, prints
//! each as a table, and writes CSV, JSON and SVG plots into a results
//! folder (`target/bench-results` by default, not committed). Figures are
//! ratios inside one run; absolute times drift on a shared machine.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use espgate_bench::crypto::{aead_pps, openssl_pps};
use espgate_bench::node_path::{Mirroring, Outcome, Run, Way, measure};
use espgate_bench::report::{Table, plot, write_json};
use espgate_bench::{IMIX, TABLE_SIZES};
use espgate_esp::{AeadAlgorithm, Backend};

/// Counts live bytes, for memory per SA.
#[global_allocator]
static ALLOCATOR: espgate_io::alloc::Counting = espgate_io::alloc::Counting;

/// espgate benchmarks.
#[derive(Parser)]
#[command(about)]
struct Cli {
    /// Short runs (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// Where to write CSV, JSON and plots.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
    /// Scenarios to run: crypto, path, mirror, state, workers, bulk, ops (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// A size column: bytes, or IMIX.
#[derive(Clone)]
struct Size {
    name: String,
    sizes: Vec<usize>,
}

fn sizes() -> Vec<Size> {
    TABLE_SIZES
        .iter()
        .map(|s| Size {
            name: s.to_string(),
            sizes: vec![*s],
        })
        .chain([Size {
            name: "IMIX".into(),
            sizes: IMIX.to_vec(),
        }])
        .collect()
}

fn m(pps: f64) -> String {
    format!("{:.2}", pps / 1e6)
}

/// Packets per second of a mix, from the rate of each size (the time per
/// packet averages, not the rates).
fn mix_rate(mix: &[usize], rate: impl Fn(usize) -> f64) -> f64 {
    let t: f64 = mix.iter().map(|&s| 1.0 / rate(s)).sum();
    mix.len() as f64 / t
}

struct Bench {
    secs: f64,
    tables: Vec<Table>,
    /// Bare AEAD rates, AES-128: (backend, size, seal, open).
    aead: Vec<(Backend, String, f64, f64)>,
}

impl Bench {
    fn crypto(&mut self) {
        let mut t = Table::new(
            "crypto",
            "1. Crypto ceiling, one core: bare AES-GCM in place, Mpps (OpenSSL's `speed -evp` beside it)",
            &["backend", "aead", "size", "seal", "open", "openssl seal"],
        );
        for backend in Backend::available() {
            for alg in [AeadAlgorithm::Aes128Gcm, AeadAlgorithm::Aes256Gcm] {
                for size in sizes() {
                    let rate = |s, open| aead_pps(backend, alg, s, open, self.secs / 2.0);
                    let seal = mix_rate(&size.sizes, |s| rate(s, false));
                    let open = mix_rate(&size.sizes, |s| rate(s, true));
                    let ossl = if backend == Backend::DEFAULT {
                        let secs = if self.secs < 1.0 { 1 } else { 2 };
                        let o: Option<Vec<f64>> = size
                            .sizes
                            .iter()
                            .map(|&s| openssl_pps(alg, s, secs))
                            .collect();
                        o.map(|v| size.sizes.len() as f64 / v.iter().map(|r| 1.0 / r).sum::<f64>())
                    } else {
                        None
                    };
                    if alg == AeadAlgorithm::Aes128Gcm {
                        self.aead.push((backend, size.name.clone(), seal, open));
                    }
                    t.row(vec![
                        backend.to_string(),
                        alg.to_string(),
                        size.name.clone(),
                        m(seal),
                        m(open),
                        ossl.map_or("-".into(), m),
                    ]);
                }
            }
        }
        self.tables.push(t);
    }

    /// A run on the preferred backend; decrypt frames preloaded (as when
    /// both cores are busy with workers).
    fn run(&self, way: Way, size: &Size, workers: usize, mirror: Option<Mirroring>) -> Outcome {
        self.run_with(Backend::preferred(), way, size, workers, mirror, false)
    }

    fn run_with(
        &self,
        backend: Backend,
        way: Way,
        size: &Size,
        workers: usize,
        mirror: Option<Mirroring>,
        fed: bool,
    ) -> Outcome {
        let run = Run {
            way,
            sizes: size.sizes.clone(),
            algorithm: AeadAlgorithm::Aes128Gcm,
            workers,
            mirror,
            state: None,
            seconds: self.secs,
            fed,
        };
        measure(&run, backend).unwrap_or_else(|e| {
            eprintln!("espgate-bench: {way:?} {}: {e:#}", size.name);
            Outcome::default()
        })
    }

    fn aead_of(&self, backend: Backend, size: &str) -> Option<(f64, f64)> {
        self.aead
            .iter()
            .find(|(b, s, _, _)| *b == backend && s == size)
            .map(|(_, _, a, b)| (*a, *b))
    }

    /// The backends the path runs with: the preferred one, and ring beside
    /// it when that is another.
    fn path_backends() -> Vec<Backend> {
        let mut v = vec![Backend::preferred()];
        if Backend::preferred() != Backend::DEFAULT {
            v.push(Backend::DEFAULT);
        }
        v
    }

    fn path(&mut self, out: &std::path::Path) -> anyhow::Result<()> {
        let mut t = Table::new(
            "path",
            "2. The node's loop on one worker core (in-memory source and sink, AES-128-GCM; decrypt fed live from the other core): Mpps, Gb/s of inner packets, share of the same backend's bare AEAD, burst time",
            &[
                "backend",
                "way",
                "size",
                "Mpps",
                "Gb/s",
                "of AEAD",
                "burst p50 ns",
                "burst p99 ns",
            ],
        );
        let mut series: Vec<(String, Vec<f64>)> = Vec::new();
        let cats: Vec<String> = sizes().iter().map(|s| s.name.clone()).collect();
        for backend in Self::path_backends() {
            for way in [Way::Encrypt, Way::Decrypt] {
                let mut v = Vec::new();
                for size in sizes() {
                    let o = self.run_with(backend, way, &size, 1, None, true);
                    let bare = self
                        .aead_of(backend, &size.name)
                        .map(|(seal, open)| match way {
                            Way::Encrypt => seal,
                            Way::Decrypt => open,
                        });
                    t.row(vec![
                        backend.to_string(),
                        format!("{way:?}").to_lowercase(),
                        size.name.clone(),
                        m(o.pps),
                        format!("{:.2}", o.gbps),
                        bare.map_or("-".into(), |b| format!("{:.0} %", 100.0 * o.pps / b)),
                        o.burst_p50_ns.to_string(),
                        o.burst_p99_ns.to_string(),
                    ]);
                    v.push(o.pps / 1e6);
                }
                series.push((format!("{backend} {way:?}").to_lowercase(), v));
            }
            let bare: Vec<_> = self.aead.iter().filter(|a| a.0 == backend).collect();
            if bare.len() == cats.len() {
                series.push((
                    format!("{backend} AEAD seal"),
                    bare.iter().map(|a| a.2 / 1e6).collect(),
                ));
                series.push((
                    format!("{backend} AEAD open"),
                    bare.iter().map(|a| a.3 / 1e6).collect(),
                ));
            }
        }
        plot(
            &out.join("path.svg"),
            "ESP through the node vs the bare AEAD, one core",
            "Mpps",
            &cats,
            &series,
        )?;
        self.tables.push(t);
        Ok(())
    }

    fn mirror(&mut self, out: &std::path::Path) -> anyhow::Result<()> {
        let mut t = Table::new(
            "mirror",
            "3. Mirroring's cost on the encrypt path (one worker; the idle peer and both mirror tasks on the other core)",
            &[
                "size",
                "interval",
                "lease",
                "Mpps",
                "vs off",
                "mirror frames/s",
                "mirror bytes/s",
                "lease stalls",
            ],
        );
        let intervals = [1u64, 64, 1024, 100_000];
        let mut series = Vec::new();
        for size in [sizes()[0].clone(), sizes()[3].clone()] {
            let off = self.run(Way::Encrypt, &size, 1, None);
            t.row(vec![
                size.name.clone(),
                "off".into(),
                "-".into(),
                m(off.pps),
                "100 %".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            for lease in [true, false] {
                let mut v = Vec::new();
                for interval in intervals {
                    let o = self.run(Way::Encrypt, &size, 1, Some(Mirroring { interval, lease }));
                    t.row(vec![
                        size.name.clone(),
                        interval.to_string(),
                        if lease { "on" } else { "off" }.into(),
                        m(o.pps),
                        format!("{:.0} %", 100.0 * o.pps / off.pps.max(1.0)),
                        format!("{:.0}", o.mirror_frames_per_s),
                        format!("{:.0}", o.mirror_bytes_per_s),
                        o.lease_stalls.to_string(),
                    ]);
                    v.push(100.0 * o.pps / off.pps.max(1.0));
                }
                series.push((
                    format!(
                        "{} B, lease {}",
                        size.name,
                        if lease { "on" } else { "off" }
                    ),
                    v,
                ));
            }
        }
        plot(
            &out.join("mirror.svg"),
            "Encrypt throughput with mirroring, % of mirroring off",
            "% of off",
            &intervals
                .iter()
                .map(|i| format!("interval {i}"))
                .collect::<Vec<_>>(),
            &series,
        )?;
        self.tables.push(t);
        Ok(())
    }

    /// The node's marks persisted (a state directory under `out`) or not,
    /// one worker encrypting, in one run, side by side.
    fn state(&mut self, out: &std::path::Path) {
        let mut t = Table::new(
            "state",
            "5. Persisting the marks: one worker encrypting with the state directory on vs off (state.ahead 2^20; the keeper thread on the other core)",
            &[
                "size",
                "off Mpps",
                "on Mpps",
                "on / off",
                "writes/s",
                "lease stalls",
            ],
        );
        for size in [sizes()[0].clone(), sizes()[3].clone()] {
            let mut run = Run {
                way: Way::Encrypt,
                sizes: size.sizes.clone(),
                algorithm: AeadAlgorithm::Aes128Gcm,
                workers: 1,
                mirror: None,
                state: None,
                seconds: self.secs,
                fed: false,
            };
            let measured = |run: &Run| {
                measure(run, Backend::preferred()).unwrap_or_else(|e| {
                    eprintln!("espgate-bench: state {}: {e:#}", size.name);
                    Outcome::default()
                })
            };
            let off = measured(&run);
            run.state = Some(out.join("state"));
            let on = measured(&run);
            t.row(vec![
                size.name.clone(),
                m(off.pps),
                m(on.pps),
                format!("{:.3}", on.pps / off.pps.max(1.0)),
                format!("{:.1}", on.state_writes_per_s),
                on.lease_stalls.to_string(),
            ]);
        }
        self.tables.push(t);
    }

    fn workers(&mut self) {
        let mut t = Table::new(
            "workers",
            "4. One worker vs two (each with its own SA and source, decrypt frames preloaded: no core is left for a feeder; this machine has 2 cores)",
            &["way", "size", "1 worker Mpps", "2 workers Mpps", "scaling"],
        );
        for way in [Way::Encrypt, Way::Decrypt] {
            for size in [sizes()[0].clone(), sizes()[3].clone()] {
                let one = self.run(way, &size, 1, None);
                let two = self.run(way, &size, 2, None);
                t.row(vec![
                    format!("{way:?}").to_lowercase(),
                    size.name.clone(),
                    m(one.pps),
                    m(two.pps),
                    format!("{:.2}x", two.pps / one.pps.max(1.0)),
                ]);
            }
        }
        self.tables.push(t);
    }
}

impl Bench {
    fn bulk(&mut self, quick: bool) {
        let mut t = Table::new(
            "bulk",
            "6. Bulk sync on the sans-IO mirror cores (frames passed in memory, no link) and memory per SA",
            &[
                "SAs",
                "sync s",
                "frames",
                "mirror bytes/SA owner",
                "mirror bytes/SA standby",
            ],
        );
        let sizes: &[usize] = if quick {
            &[10_000, 100_000]
        } else {
            &[10_000, 100_000, 1_000_000]
        };
        for &n in sizes {
            let o = espgate_bench::bulk::bulk_sync(n, &espgate_io::alloc::live);
            t.row(vec![
                n.to_string(),
                format!("{:.3}", o.seconds),
                o.frames.to_string(),
                format!("{:.0}", o.owner_bytes_per_sa),
                format!("{:.0}", o.standby_bytes_per_sa),
            ]);
        }
        self.tables.push(t);
        let mut t = Table::new(
            "bulk_veth",
            "6b. The same bulk sync over a veth pair (AF_PACKET sockets, both cores in one thread taking turns; needs root)",
            &["SAs", "sync s", "frames"],
        );
        for &n in sizes {
            match espgate_bench::bulk::bulk_sync_veth(n, 0) {
                Ok(o) => t.row(vec![
                    n.to_string(),
                    format!("{:.3}", o.seconds),
                    o.frames.to_string(),
                ]),
                Err(e) => {
                    eprintln!("espgate-bench: bulk sync over veth: {e:#}");
                    t.row(vec![n.to_string(), "-".into(), "-".into()]);
                }
            }
        }
        self.tables.push(t);
        let mut t = Table::new(
            "bulk_loss",
            "6c. The bulk sync over veth with mirror frames lost at random both ways (nftables numgen; needs root)",
            &[
                "SAs",
                "loss %",
                "sync s",
                "frames",
                "dropped",
                "bulks completed again",
            ],
        );
        let n = *sizes.last().expect("sizes");
        for loss in [1, 10] {
            match espgate_bench::bulk::bulk_sync_veth(n, loss) {
                Ok(o) => t.row(vec![
                    n.to_string(),
                    loss.to_string(),
                    format!("{:.3}", o.seconds),
                    o.frames.to_string(),
                    o.dropped.to_string(),
                ]),
                Err(e) => {
                    eprintln!("espgate-bench: bulk sync over veth with loss: {e:#}");
                    t.row(vec![
                        n.to_string(),
                        loss.to_string(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
            }
        }
        self.tables.push(t);
        let (out, inb) = espgate_bench::bulk::esp_sa_bytes(10_000, &espgate_io::alloc::live);
        let mut t = Table::new(
            "esp_sa_memory",
            "6d. Memory of an ESP SA object in a worker (AES-128-GCM, ring key schedule included)",
            &["direction", "bytes/SA"],
        );
        t.row(vec!["outbound".into(), format!("{out:.0}")]);
        t.row(vec!["inbound (window 4096)".into(), format!("{inb:.0}")]);
        self.tables.push(t);
    }
}

impl Bench {
    fn ops(&mut self) {
        let mut t = Table::new(
            "ops",
            "7. SA operations on a running node: one worker encrypting 64 B at full rate while its SA is rekeyed every 20 ms (make-before-break), then SAs added in one request and a snapshot of all",
            &["measure", "value"],
        );
        match espgate_bench::ops::measure(
            Backend::preferred(),
            self.secs,
            Duration::from_millis(20),
            10_000,
        ) {
            Ok(o) => {
                let rows = [
                    ("Mpps, no operation", m(o.steady_pps)),
                    ("Mpps while rekeying", m(o.rekeying_pps)),
                    (
                        "rekeying / steady",
                        format!("{:.3}", o.rekeying_pps / o.steady_pps.max(1.0)),
                    ),
                    ("rekeys", o.rekeys.to_string()),
                    ("rekey ms p50", format!("{:.3}", o.rekey_ms_p50)),
                    ("rekey ms max", format!("{:.3}", o.rekey_ms_max)),
                    ("packets dropped while rekeying", o.dropped.to_string()),
                    (
                        &*format!("s to add {} SAs", o.added.0),
                        format!("{:.3}", o.added.1),
                    ),
                    ("ms to snapshot every SA", format!("{:.1}", o.snapshot_ms)),
                ];
                for (k, v) in rows {
                    t.row(vec![k.to_string(), v]);
                }
            }
            Err(e) => eprintln!("espgate-bench: SA operations: {e:#}"),
        }
        self.tables.push(t);
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(feature = "ipsec-mb")]
    if let Err(e) = espgate_io::ipsec_mb::install() {
        eprintln!("espgate-bench: {e}; benchmarking without intel-ipsec-mb");
    }
    let want = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    std::fs::create_dir_all(&cli.out)?;
    let mut b = Bench {
        secs: if cli.quick { 0.3 } else { 2.0 },
        tables: Vec::new(),
        aead: Vec::new(),
    };
    println!(
        "espgate-bench ({} mode, crypto backend {}, {} cores)\n",
        if cli.quick { "quick" } else { "full" },
        Backend::preferred(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut shown = 0;
    let mut show = |b: &Bench| {
        for t in &b.tables[shown..] {
            println!("{}", t.markdown());
        }
        shown = b.tables.len();
    };
    if want("crypto") || want("path") {
        b.crypto();
        show(&b);
    }
    if want("path") {
        b.path(&cli.out)?;
        show(&b);
    }
    if want("mirror") {
        b.mirror(&cli.out)?;
        show(&b);
    }
    if want("state") {
        b.state(&cli.out);
        show(&b);
    }
    if want("workers") {
        b.workers();
        show(&b);
    }
    if want("bulk") {
        b.bulk(cli.quick);
        show(&b);
    }
    if want("ops") {
        b.ops();
        show(&b);
    }
    for t in &b.tables {
        t.write_csv(&cli.out)?;
    }
    write_json(&b.tables, &cli.out)?;
    println!("CSV, JSON and SVG plots in {}", cli.out.display());
    Ok(())
}
