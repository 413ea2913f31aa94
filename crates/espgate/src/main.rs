//! The `espgate` command.

#[macro_use]
mod out;

mod client;
mod control_socket;
mod demo;
mod esp_demo;
mod esp_pcap;
mod fanout;
mod host;
mod import;
mod keys;
mod metrics;
mod node_lock;
mod report;
mod requests;
mod run;
mod views;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use espgate_esp::Backend;

/// espgate: a high-availability IPsec ESP gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one SA over a pcap file (tunnel mode, AES-GCM).
    Esp {
        #[command(subcommand)]
        op: EspOp,
    },
    /// The pair's failover and failback in memory, with proof of no
    /// nonce reuse.
    ///
    /// No NIC, no root: nodes a and b mirror their SAs to each other and
    /// carry their hosts' traffic to a remote gateway; a is killed, b takes
    /// its SAs over and the host's part fences a; a restarts with its
    /// memory gone, syncs and takes them back. Prints the timings and the
    /// losses, and proves from the capture of the ESP network that no
    /// (SPI, sequence number) pair was used twice.
    Demo {
        /// Where to write the capture of the ESP network (wan.pcap).
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
    },
    /// Run a node from its configuration until SIGINT or SIGTERM.
    Run {
        /// The node configuration (YAML); without it, the node waits for
        /// the host to push one on the control socket.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The control socket (a Unix socket path).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Where the node's lock (NAME.lock: one process per node) goes;
        /// made mode 0700 if missing.
        #[arg(long, env = "ESPGATE_LOCK_DIR", default_value = node_lock::DEFAULT_DIR)]
        lock_dir: PathBuf,
        /// Where the node keeps its state (NAME/state: the high-water
        /// marks of its SAs' sequence numbers, so a restart never reuses
        /// one); made mode 0700 if missing.
        #[arg(long, env = "ESPGATE_STATE_DIR", default_value = run::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Persist nothing: a restart may then reuse sequence numbers
        /// unless the peer holds the SAs.
        #[arg(long, conflicts_with = "discard_state")]
        no_state: bool,
        /// Start even though the state file is corrupt: it is set aside
        /// (state.discarded-TIME) and the node starts without its SAs'
        /// history (rekey them).
        #[arg(long)]
        discard_state: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g.
        /// 127.0.0.1:9180).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// AES-GCM implementation: ring, rustcrypto or ipsec-mb (default:
        /// the fastest the build has).
        #[arg(long)]
        backend: Option<String>,
        /// On SIGINT or SIGTERM, stop at once: do not hand the SAs to the
        /// peer first (the peer then takes them over as after a crash).
        #[arg(long)]
        no_drain: bool,
    },
    /// Hand every SA a running node runs to its peer with its exact state
    /// (no sequence jump, no replay refusal), then stop the node: for
    /// planned maintenance. Refused (and the node runs on) when the peer
    /// is not heard or not synchronised.
    Drain {
        /// The node's control socket.
        #[arg(long)]
        control: Option<PathBuf>,
    },
    /// List, add, delete or rekey the SAs of a running node.
    Sa {
        #[command(subcommand)]
        op: SaOp,
        /// The node's control socket (default: $ESPGATE_CONTROL, else
        /// /run/espgate/control.sock).
        #[arg(long, global = true)]
        control: Option<PathBuf>,
    },
    /// A running node's counters, per worker.
    Stats {
        /// The node's control socket.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// A running node's pair: peer health, bulk sync, mirror link counters.
    Peer {
        /// The node's control socket.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// A live view of a running node: per-worker and per-SA rates, and the
    /// bulk sync's progress while it runs.
    Top {
        /// The node's control socket.
        #[arg(long)]
        control: Option<PathBuf>,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The host processor of a pair: push configurations, watch health,
    /// reroute and order takeover on a failure.
    Host {
        /// The host configuration (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// A control socket for an IKE daemon (charon's kernel-espgate
        /// plugin): its SAs and rules go to both nodes, each SA's home the
        /// node holding its local tunnel address.
        #[arg(long)]
        control: Option<PathBuf>,
    },
    /// Write the SAs of a node configuration (and of SA files) as
    /// Wireshark's ESP SA table: save it as `esp_sa` in a Wireshark
    /// profile directory and Wireshark or tshark decrypts their traffic.
    Keys {
        /// A node configuration (YAML): all of its SAs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// SA files (YAML); may be given more than once.
        #[arg(long)]
        sa: Vec<PathBuf>,
        /// Write here (mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Turn a DPDK ipsec-secgw configuration file into an espgate node
    /// file: AES-GCM tunnel SAs and their policy rules; every line that
    /// does not map is listed on standard error.
    ImportSecgw {
        /// The ipsec-secgw configuration (ep0.cfg style).
        input: PathBuf,
        /// Write the node file here (mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The node's name.
        #[arg(long, default_value = "imported")]
        name: String,
        /// The protected port's interface.
        #[arg(long, default_value = "lan")]
        protected_interface: String,
        /// The protected port's address and prefix length.
        #[arg(long, default_value = "192.168.0.254/16")]
        protected_address: String,
        /// The unprotected port's interface.
        #[arg(long, default_value = "wan")]
        unprotected_interface: String,
        /// The unprotected port's address and prefix length (default: the
        /// first outbound tunnel's source, /24 or /64).
        #[arg(long)]
        unprotected_address: Option<String>,
        /// Renumber the reserved SPIs (1..=255, which secgw's examples use
        /// and espgate refuses) to SPI + this offset; without it their SAs
        /// are left out.
        #[arg(long)]
        spi_offset: Option<String>,
    },
    /// Print the build: version and crypto backends.
    Info,
}

#[derive(Subcommand)]
enum SaOp {
    /// Every SA: owner, state, sequence number, lease end, counters,
    /// lifetime left, drops and their reasons.
    List {
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Add SAs and policy rules: a YAML file with the node file's `sas`
    /// and `spd` keys.
    Add {
        /// The YAML file.
        #[arg(long)]
        file: PathBuf,
        /// Where the rules go in the SPD (default: after the others).
        #[arg(long)]
        position: Option<usize>,
    },
    /// Delete an SA and the rules that name it.
    Del {
        /// Its SPI (decimal or 0x-hex).
        #[arg(long)]
        spi: String,
        /// outbound or inbound.
        #[arg(long)]
        direction: String,
    },
    /// Replace an SA by a new one (an SA file), make-before-break: the
    /// new SA takes the traffic at once, the old one goes after the grace
    /// period. Rekey inbound SAs (both ends) before outbound ones.
    Rekey {
        /// The old SA's SPI.
        #[arg(long)]
        spi: String,
        /// outbound or inbound.
        #[arg(long)]
        direction: String,
        /// The new SA (an SA file: spi, aead, key, tunnel, ...).
        #[arg(long)]
        file: PathBuf,
        /// How long the old SA lives on, in milliseconds (default 5000).
        #[arg(long)]
        grace_ms: Option<u64>,
    },
}

#[derive(Subcommand)]
enum EspOp {
    /// Show the ESP core alone on the bundled sample traffic.
    Demo {
        /// Where to write the plaintext and ESP captures.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
    },
    /// Encrypt every IPv4/IPv6 frame of IN into ESP frames in OUT.
    Encrypt(EspArgs),
    /// Decrypt every ESP frame of IN into plaintext frames in OUT.
    Decrypt(EspArgs),
}

#[derive(clap::Args)]
struct EspArgs {
    /// The SA definition (YAML).
    #[arg(long)]
    sa: PathBuf,
    /// AES-GCM implementation: ring, rustcrypto or ipsec-mb (default: the
    /// fastest the build has).
    #[arg(long)]
    backend: Option<String>,
    /// Input pcap (Ethernet).
    input: PathBuf,
    /// Output pcap.
    output: PathBuf,
}

impl EspArgs {
    fn backend(&self) -> anyhow::Result<Backend> {
        parse_backend(self.backend.as_deref())
    }
}

fn parse_backend(name: Option<&str>) -> anyhow::Result<Backend> {
    match name {
        Some(b) => b.parse().map_err(anyhow::Error::msg),
        None => Ok(Backend::preferred()),
    }
}

fn compiled_backends() -> String {
    Backend::available()
        .iter()
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    #[cfg(feature = "ipsec-mb")]
    match espgate_io::ipsec_mb::install() {
        Ok(arch) => tracing::debug!(arch, "intel-ipsec-mb installed"),
        Err(e) => tracing::warn!("{e}; using {}", Backend::DEFAULT),
    }
    let result = match cli.command {
        Command::Info => outln!(
            "espgate {}\ncrypto backend: {} (compiled: {})\nports: mem, af_packet, pcap{}",
            env!("CARGO_PKG_VERSION"),
            Backend::preferred(),
            compiled_backends(),
            if cfg!(feature = "dpdk") { ", dpdk" } else { "" }
        ),
        Command::Demo { out } => demo::run(Backend::preferred(), &out),
        Command::Keys { config, sa, out } => keys::run(config.as_deref(), &sa, out.as_deref()),
        Command::ImportSecgw {
            input,
            out,
            name,
            protected_interface,
            protected_address,
            unprotected_interface,
            unprotected_address,
            spi_offset,
        } => spi_offset
            .as_deref()
            .map(|o| {
                espgate_control::hexkey::parse_u32(o)
                    .ok_or_else(|| anyhow::anyhow!("--spi-offset {o:?} is not a 32-bit number"))
            })
            .transpose()
            .and_then(|spi_offset| {
                let options = espgate_control::secgw_import::ImportOptions {
                    name,
                    protected: (protected_interface, protected_address),
                    unprotected: (unprotected_interface, unprotected_address),
                    spi_offset,
                };
                import::run(&input, &options, out.as_deref())
            }),
        Command::Host {
            config,
            duration,
            control,
        } => host::run(
            &config,
            duration.map(std::time::Duration::from_secs_f64),
            control.as_deref(),
        ),
        Command::Run {
            config,
            control,
            lock_dir,
            state_dir,
            no_state,
            discard_state,
            metrics,
            duration,
            backend,
            no_drain,
        } => parse_backend(backend.as_deref()).and_then(|backend| {
            run::run(run::RunOptions {
                config: config.as_deref(),
                control: control.as_deref(),
                lock_dir: &lock_dir,
                state: (!no_state).then_some(run::StateOptions {
                    dir: &state_dir,
                    discard: discard_state,
                }),
                metrics,
                backend,
                duration: duration.map(std::time::Duration::from_secs_f64),
                drain_on_stop: !no_drain,
            })
        }),
        Command::Drain { control } => client::drain(&client::socket(control)),
        Command::Sa { op, control } => {
            let sock = client::socket(control);
            match op {
                SaOp::List { json } => client::sa_list(&sock, json),
                SaOp::Add { file, position } => client::sa_add(&sock, &file, position),
                SaOp::Del { spi, direction } => client::sa_del(&sock, &spi, &direction),
                SaOp::Rekey {
                    spi,
                    direction,
                    file,
                    grace_ms,
                } => client::sa_rekey(&sock, &spi, &direction, &file, grace_ms),
            }
        }
        Command::Stats { control, json } => client::stats(&client::socket(control), json),
        Command::Peer { control, json } => client::peer(&client::socket(control), json),
        Command::Top {
            control,
            interval,
            count,
        } => client::top(
            &client::socket(control),
            std::time::Duration::from_secs_f64(interval.max(0.1)),
            count,
        ),
        Command::Esp {
            op: EspOp::Demo { out },
        } => esp_demo::run(Backend::preferred(), &out),
        Command::Esp { op } => {
            let (args, encrypt) = match op {
                EspOp::Encrypt(a) => (a, true),
                EspOp::Decrypt(a) => (a, false),
                EspOp::Demo { .. } => unreachable!("handled above"),
            };
            args.backend().and_then(|backend| {
                tracing::info!(%backend, compiled = %compiled_backends(), "crypto backend");
                esp_pcap::run(&args.sa, backend, &args.input, &args.output, encrypt)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `espgate peer | head -1`: the reader took what it wanted.
        Err(e) if out::closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("espgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
