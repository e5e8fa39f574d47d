//! # signalbox-bench — Signalbox side by side with nats-server and a bare quinn forwarder
//!
//! One harness, one workload, several systems: the Signalbox relay (its own process, real
//! clients from the client crate), nats-server plain and with TLS (`async-nats` clients;
//! broadcast on one subject per session, targeted on one subject per connection), and a
//! bare quinn forwarder with the same framing — the floor the relay's own work sits on.
//! Each server runs pinned to one core, the load generator to the other.
//!
//! Throughput is closed-loop (each publisher at most 1000 messages ahead of its slowest
//! receiver), every system's server up at once and a row's reps taken by each system in turn,
//! so a slow spell of the shared machine falls on all of them; latency is open-loop at fixed rates, measured from each message's *intended*
//! send time, every system in turn over several rounds (at low rates an idle core's wake-up
//! drifts over minutes, and rounds keep that drift from deciding the comparison); cost is
//! the server's CPU seconds per million deliveries and its peak RSS from /proc. Every run
//! checks itself: a lost or out-of-order message on loopback fails the run.
//! `scripts/bench.sh [--quick]` runs it and writes `bench/results/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use signalbox_relay::Congestion;
use signalbox_relay::test_utils::faulty::{Faults, FaultyLink};

/// The relay's allocator, as the `signalbox` binary uses it (the servers here run in this
/// binary too).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
mod payload;
mod quinn_fwd;
mod run;
mod scale;
mod servers;
mod stats;

use backends::Kind;
use run::{Latency, Throughput, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "signalbox-bench",
    about = "Signalbox vs nats-server vs raw QUIC"
)]
struct Cli {
    #[command(subcommand)]
    serve: Option<Serve>,
    /// The headline rows only (under two minutes).
    #[arg(long)]
    quick: bool,
    /// A tiny run that checks the harness (for CI; no timing claims).
    #[arg(long)]
    smoke: bool,
    /// Systems to measure (default: all that are available).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<Kind>,
    /// Repetitions of each throughput row (the median is reported).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds measured per throughput run (after a warm-up).
    #[arg(long)]
    seconds: Option<f64>,
    /// Core for the servers (`taskset`); the script pins the harness to another one.
    #[arg(long, default_value = "0")]
    server_core: usize,
    /// Don't pin servers to a core.
    #[arg(long)]
    no_pin: bool,
    /// Clients in the scale run (0: skip).
    #[arg(long)]
    scale: Option<usize>,
    /// Only the workloads whose label contains this (e.g. "10→10", "targeted, 64 B").
    #[arg(long)]
    filter: Option<String>,
    /// Skip the latency runs.
    #[arg(long)]
    no_latency: bool,
    /// Rounds of the fixed-rate latency rows (1 000 and 10 000 deliveries/s), every system
    /// once per round, in turn, the order reversed every other round; each figure is the
    /// median over the rounds (default: 5 in a full run, 1 otherwise).
    #[arg(long)]
    latency_rounds: Option<usize>,
    /// Write `<name>.json` and `<name>.md` into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The results' file name (default: today's date, with `-quick` or `-smoke` for those runs).
    #[arg(long)]
    name: Option<String>,
    /// The congestion controller of the relay and the quinn forwarder (not nats-server's).
    #[arg(long, value_enum, default_value_t = Congestion::default())]
    congestion: Congestion,
    /// A bad network in front of the QUIC systems (the relay and the quinn forwarder; not
    /// nats-server's TCP): this share of datagrams lost, each way (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// …and this many milliseconds added to every datagram, each way.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(Debug, Subcommand)]
enum Serve {
    /// Run a Signalbox relay for the harness (prints `addr` and `fp`).
    ServeRelay {
        #[arg(long)]
        data_dir: PathBuf,
        /// Join the cluster at this NATS URL.
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long, value_enum, default_value_t = Congestion::default())]
        congestion: Congestion,
    },
    /// Run the bare quinn forwarder (prints `addr` and `fp`).
    ServeQuinn {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Congestion::default())]
        congestion: Congestion,
    },
}

#[derive(Debug, Serialize)]
struct Row {
    backend: &'static str,
    workload: Workload,
    label: String,
    runs: Vec<Throughput>,
    median_deliveries_per_s: f64,
    min_deliveries_per_s: f64,
    max_deliveries_per_s: f64,
    median_cpu_s_per_m: f64,
    peak_rss_kib: u64,
    /// The load generator's busiest run: its CPU time over the window ÷ the window.
    harness_busy: f64,
}

#[derive(Debug, Serialize)]
struct LatencyRow {
    backend: &'static str,
    label: String,
    /// How many alternated rounds `result` summarises (each quantile the median over them,
    /// the maximum and the publisher lag the largest): 1 for the rates relative to a system's
    /// own maximum.
    rounds: usize,
    result: Latency,
}

/// One round's measurement of one system at one fixed rate.
#[derive(Debug, Serialize)]
struct LatencyRound {
    round: usize,
    backend: &'static str,
    label: String,
    result: Latency,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: String,
    mode: &'static str,
    throughput: Vec<Row>,
    latency: Vec<LatencyRow>,
    /// Every round behind the fixed-rate rows of `latency`.
    latency_rounds: Vec<LatencyRound>,
    scale: Option<scale::Scale>,
    /// The path between clients and the QUIC systems: loopback, or a lossy proxy.
    network: String,
    /// The QUIC systems' congestion controller.
    congestion: Congestion,
    /// The same workloads on one relay and on three nodes joined through nats-server.
    cluster: Vec<ClusterRow>,
    failures: Vec<String>,
    /// What the bare quinn forwarder dropped: it has no back-pressure and drops what its
    /// route queues (16 384 frames) cannot hold, by design, so its drops are reported, not
    /// failures.
    floor_drops: Vec<String>,
}

impl Report {
    /// Records messages lost or out of order: a failure, except the forwarder's own drops.
    fn lost(&mut self, kind: Kind, what: String) {
        if kind == Kind::Quinn {
            self.floor_drops.push(what);
        } else {
            self.failures.push(what);
        }
    }
}

/// One workload on one node and on a three-node cluster.
#[derive(Debug, Serialize)]
struct ClusterRow {
    label: String,
    one_node_deliveries_per_s: f64,
    three_nodes_deliveries_per_s: f64,
    three_nodes_cpu_s_per_m: f64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.serve {
        Some(Serve::ServeRelay {
            data_dir,
            cluster,
            congestion,
        }) => serve(data_dir, false, cluster, congestion),
        Some(Serve::ServeQuinn {
            data_dir,
            congestion,
        }) => serve(data_dir, true, None, congestion),
        None => {
            servers::use_congestion(cli.congestion);
            harness(cli)
        }
    }
}

/// A server process: prints where it listens, then runs until killed.
fn serve(
    data_dir: PathBuf,
    bare: bool,
    cluster: Option<String>,
    congestion: Congestion,
) -> anyhow::Result<()> {
    // As the `signalbox` binary does (the bare forwarder too, so both run alike).
    #[cfg(feature = "mimalloc")]
    signalbox_relay::allocator::purge_promptly();
    let rt = signalbox_relay::runtime::builder().build()?;
    rt.block_on(async move {
        let config = signalbox_relay::RelayConfig {
            open: true,
            signals_per_second: 0,
            // nats-server has no byte allowance per publisher either.
            fanout_bytes_per_second: 0,
            // As much as nats-server lets wait for one subscriber (max_pending, 64 MiB).
            receiver_queue_bytes: 64 << 20,
            cluster,
            congestion,
            ..signalbox_relay::RelayConfig::local(&data_dir)
        };
        if bare {
            let identity = signalbox_relay::Identity::load_or_create(&data_dir)?;
            let server = signalbox_relay::server_config(&identity, &config)?;
            // The relay's socket, with its buffers.
            let socket = signalbox_relay::udp_socket(config.listen)?;
            let runtime = quinn::default_runtime().context("no async runtime")?;
            let endpoint = quinn::Endpoint::new(
                signalbox_relay::endpoint_config(None),
                Some(server.endpoint_default()),
                socket,
                runtime,
            )?;
            println!("addr {}", endpoint.local_addr()?);
            println!("fp {}", identity.fingerprint);
            quinn_fwd::serve(endpoint, server).await;
        } else {
            let relay = signalbox_relay::Relay::spawn(config).await?;
            println!("addr {}", relay.quic_addr());
            println!("fp {}", relay.fingerprint());
            std::future::pending::<()>().await;
        }
        anyhow::Ok(())
    })
}

/// The fan-out every latency row is measured on.
const HEAD: Workload = Workload {
    pubs: 1,
    subs: 10,
    size: 64,
    targeted: false,
};

/// A system under test, behind the lossy proxy when the run asks for one (the QUIC systems
/// only; the proxy runs in this process).
struct Measured {
    server: servers::Server,
    _link: Option<FaultyLink>,
}

impl Measured {
    async fn start(
        kind: Kind,
        core: Option<usize>,
        dir: &std::path::Path,
        cli: &Cli,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut server = servers::start(kind, core, dir)?;
        let lossy = cli.loss > 0.0 || cli.delay_ms > 0;
        let link = if lossy && matches!(kind, Kind::Signalbox | Kind::Quinn) {
            let faults = Faults {
                drop: cli.loss,
                delay: Duration::from_millis(cli.delay_ms),
                ..Faults::default()
            };
            let link = FaultyLink::start(server.target.addr, 1, faults).await;
            server.target.addr = link.addr();
            Some(link)
        } else {
            None
        };
        Ok(Self {
            server,
            _link: link,
        })
    }
}

impl std::ops::Deref for Measured {
    type Target = servers::Server;

    fn deref(&self) -> &servers::Server {
        &self.server
    }
}

/// One latency measurement of `kind` on the headline fan-out at `rate`, reported as it ends;
/// a loss is recorded in `report`.
async fn measure_latency(
    report: &mut Report,
    kind: Kind,
    server: &servers::Server,
    rate: u64,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Latency> {
    let l = run::latency(&server.target, HEAD, rate, warmup, measure).await?;
    if l.lost > 0 {
        report.lost(
            kind,
            format!("{} latency at {rate}/s: {} lost", kind.name(), l.lost),
        );
    }
    eprintln!(
        "{:<9} latency {} at {rate}/s: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs; publisher lag up to {:.0} µs",
        kind.name(),
        HEAD.label(),
        l.p50_us,
        l.p99_us,
        l.p999_us,
        l.publisher_lag_max_us
    );
    Ok(l)
}

fn workloads(cli: &Cli) -> Vec<Workload> {
    let w = |pubs, subs, size, targeted| Workload {
        pubs,
        subs,
        size,
        targeted,
    };
    if cli.smoke {
        return vec![w(1, 3, 64, false), w(2, 3, 256, true)];
    }
    if cli.quick {
        return vec![
            w(1, 10, 64, false),
            w(10, 10, 64, false),
            w(1, 10, 1024, false),
            w(1, 10, 64, true),
        ];
    }
    let mut all = Vec::new();
    for size in [64, 1024, 8192] {
        for (pubs, subs) in [(1, 1), (1, 10), (10, 10), (1, 100), (50, 50)] {
            all.push(w(pubs, subs, size, false));
            if subs > 1 {
                all.push(w(pubs, subs, size, true));
            }
        }
    }
    all
}

/// The path the QUIC systems are measured on, in words.
fn network(cli: &Cli) -> String {
    if cli.loss > 0.0 || cli.delay_ms > 0 {
        format!(
            "through a lossy proxy: {:.1} % of datagrams lost and {} ms added, each way",
            cli.loss * 100.0,
            cli.delay_ms
        )
    } else {
        "loopback".into()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores available to the harness")
}

fn harness(cli: Cli) -> anyhow::Result<()> {
    let mut kinds = if cli.backends.is_empty() {
        vec![Kind::Signalbox, Kind::Nats, Kind::NatsTls, Kind::Quinn]
    } else {
        cli.backends.clone()
    };
    if !servers::nats_available() {
        eprintln!("nats-server is not installed: measuring without it");
        kinds.retain(|k| !matches!(k, Kind::Nats | Kind::NatsTls));
    }
    let (reps, seconds, warmup) = match (cli.smoke, cli.quick) {
        (true, _) => (1, 0.5, 0.2),
        (_, true) => (1, 2.0, 0.5),
        _ => (3, 2.0, 0.5),
    };
    let reps = cli.reps.unwrap_or(reps);
    let measure = Duration::from_secs_f64(cli.seconds.unwrap_or(seconds));
    let warmup = Duration::from_secs_f64(warmup);
    let core = (!cli.no_pin).then_some(cli.server_core);
    let scale_n = cli.scale.unwrap_or(if cli.smoke {
        50
    } else if cli.quick {
        0
    } else {
        3000
    });
    let dir = std::env::temp_dir().join(format!("signalbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = Report {
        date: today(),
        machine: machine(),
        mode: if cli.smoke {
            "smoke"
        } else if cli.quick {
            "quick"
        } else {
            "full"
        },
        throughput: Vec::new(),
        latency: Vec::new(),
        latency_rounds: Vec::new(),
        scale: None,
        network: network(&cli),
        congestion: cli.congestion,
        cluster: Vec::new(),
        failures: Vec::new(),
        floor_drops: Vec::new(),
    };
    let lossy = cli.loss > 0.0 || cli.delay_ms > 0;
    let mut loads = workloads(&cli);
    if let Some(f) = &cli.filter {
        loads.retain(|w| w.label().contains(f.as_str()));
    }
    rt.block_on(async {
        // Every system's server is up for the throughput rows, and a row's reps go round the
        // systems in turn (the order reversed every other rep): this machine is shared, and a
        // slow spell of a few minutes used to fall on one system's rows alone and skew every
        // ratio in them. Each server still takes the rows in the same order, so what one
        // keeps from an earlier row is as before.
        let mut up = Vec::new();
        for &kind in &kinds {
            up.push((kind, Measured::start(kind, core, &dir.join(kind.name()), &cli).await?));
        }
        for &w in &loads {
            let mut by_system: Vec<Vec<Throughput>> = up.iter().map(|_| Vec::new()).collect();
            for rep in 0..reps {
                for i in in_turn(up.len(), rep) {
                    let (kind, server) = &up[i];
                    let kind = *kind;
                    let t = run::throughput(server, w, warmup, measure)
                        .await
                        .with_context(|| format!("{} {}", kind.name(), w.label()))?;
                    if t.lost > 0 || t.out_of_order > 0 {
                        let what = format!(
                            "{} {}: {} lost, {} out of order",
                            kind.name(),
                            w.label(),
                            t.lost,
                            t.out_of_order
                        );
                        report.lost(kind, what);
                    }
                    by_system[i].push(t);
                }
            }
            for ((kind, _), runs) in up.iter().zip(by_system) {
                let kind = *kind;
                let rates: Vec<f64> = runs.iter().map(|r| r.deliveries_per_s).collect();
                let row = Row {
                    backend: kind.name(),
                    workload: w,
                    label: w.label(),
                    median_deliveries_per_s: median(rates.clone()),
                    min_deliveries_per_s: rates.iter().copied().fold(f64::INFINITY, f64::min),
                    max_deliveries_per_s: rates.iter().copied().fold(0.0, f64::max),
                    median_cpu_s_per_m: median(runs.iter().map(|r| r.server_cpu_s_per_m).collect()),
                    peak_rss_kib: runs.iter().map(|r| r.server_peak_rss_kib).max().unwrap_or(0),
                    harness_busy: runs.iter().map(|r| r.harness_busy).fold(0.0, f64::max),
                    runs,
                };
                eprintln!(
                    "{:<9} {:<28} {:>12.0} deliveries/s  cpu {:.3} s/M",
                    kind.name(),
                    row.label,
                    row.median_deliveries_per_s,
                    row.median_cpu_s_per_m
                );
                report.throughput.push(row);
            }
        }
        for (kind, server) in &up {
            let kind = *kind;
            // Latency at 50 % / 80 % of the headline fan-out's own maximum (the fixed rates
            // come after every system, in rounds).
            let max = report
                .throughput
                .iter()
                .find(|r| r.backend == kind.name() && r.label == HEAD.label())
                .map(|r| r.median_deliveries_per_s)
                .unwrap_or(0.0);
            if !cli.no_latency && !cli.smoke && !cli.quick && max > 0.0 {
                for rate in [(max * 0.5) as u64, (max * 0.8) as u64] {
                    let l = measure_latency(&mut report, kind, server, rate, warmup, measure).await?;
                    report.latency.push(LatencyRow {
                        backend: kind.name(),
                        label: HEAD.label(),
                        rounds: 1,
                        result: l,
                    });
                }
            }
        }
        drop(up);
        // Latency at fixed rates, in rounds: at one signal every few milliseconds each
        // system waits mostly on an idle core waking, which drifts over minutes, so every
        // system is measured once per round, in turn (the order reversed every other round,
        // all servers up and idle but the one measured), and each figure is the median over
        // the rounds.
        let fixed: &[u64] = if cli.no_latency {
            &[]
        } else if cli.smoke {
            &[1_000]
        } else {
            &[1_000, 10_000]
        };
        let rounds = cli
            .latency_rounds
            .unwrap_or(if cli.smoke || cli.quick { 1 } else { 5 })
            .max(1);
        if !fixed.is_empty() {
            let mut up = Vec::new();
            for &kind in &kinds {
                let at = dir.join(format!("{}-latency", kind.name()));
                up.push((kind, Measured::start(kind, core, &at, &cli).await?));
            }
            for round in 1..=rounds {
                for (kind, server) in in_turn(up.len(), round - 1).map(|i| &up[i]) {
                    for &rate in fixed {
                        let l = measure_latency(&mut report, *kind, server, rate, warmup, measure)
                            .await?;
                        report.latency_rounds.push(LatencyRound {
                            round,
                            backend: kind.name(),
                            label: HEAD.label(),
                            result: l,
                        });
                    }
                }
            }
            drop(up);
            for &kind in &kinds {
                for &rate in fixed {
                    let of: Vec<&Latency> = report
                        .latency_rounds
                        .iter()
                        .filter(|r| r.backend == kind.name() && r.result.rate == rate)
                        .map(|r| &r.result)
                        .collect();
                    report.latency.push(LatencyRow {
                        backend: kind.name(),
                        label: HEAD.label(),
                        rounds: of.len(),
                        result: Latency::summary(rate, &of),
                    });
                }
            }
            // Each system's rows together, by rate.
            let place = |b: &str| kinds.iter().position(|k| k.name() == b);
            report
                .latency
                .sort_by_key(|r| (place(r.backend), r.result.rate));
        }
        // The cluster rows: broadcast fan-outs on three nodes (clients spread over them, all
        // processes on the server core) next to the single relay's numbers above.
        // Not on a lossy path: the cluster's nodes are not behind the proxy.
        if !cli.smoke && !lossy && kinds.contains(&Kind::Signalbox) && servers::nats_available() {
            let server_dir = dir.join("cluster");
            std::fs::create_dir_all(&server_dir)?;
            let server = servers::start(Kind::Cluster, core, &server_dir)?;
            for w in loads.iter().filter(|w| !w.targeted && w.size == 64 && w.subs >= 10) {
                let Some(one) = report
                    .throughput
                    .iter()
                    .find(|r| r.backend == Kind::Signalbox.name() && r.label == w.label())
                    .map(|r| r.median_deliveries_per_s)
                else {
                    continue;
                };
                let mut runs = Vec::new();
                for _ in 0..reps {
                    let t = run::throughput(&server, *w, warmup, measure)
                        .await
                        .with_context(|| format!("cluster {}", w.label()))?;
                    if t.lost > 0 || t.out_of_order > 0 {
                        report.failures.push(format!(
                            "cluster {}: {} lost, {} out of order",
                            w.label(),
                            t.lost,
                            t.out_of_order
                        ));
                    }
                    runs.push(t);
                }
                let row = ClusterRow {
                    label: w.label(),
                    one_node_deliveries_per_s: one,
                    three_nodes_deliveries_per_s: median(runs.iter().map(|r| r.deliveries_per_s).collect()),
                    three_nodes_cpu_s_per_m: median(runs.iter().map(|r| r.server_cpu_s_per_m).collect()),
                };
                eprintln!(
                    "cluster   {:<28} {:>12.0} deliveries/s on 3 nodes ({:.0} on 1)",
                    row.label, row.three_nodes_deliveries_per_s, row.one_node_deliveries_per_s
                );
                report.cluster.push(row);
            }
        }
        if scale_n > 0 && kinds.contains(&Kind::Signalbox) {
            let server_dir = dir.join("scale");
            std::fs::create_dir_all(&server_dir)?;
            let server = servers::start(Kind::Signalbox, core, &server_dir)?;
            let s = scale::run(&server, scale_n).await?;
            if s.joined != s.clients || s.broadcast_reached != s.clients {
                report.failures.push(format!(
                    "scale: {} of {} joined, broadcast reached {}{}",
                    s.joined,
                    s.clients,
                    s.broadcast_reached,
                    s.first_error
                        .as_deref()
                        .map(|e| format!(" (first failed join: {e})"))
                        .unwrap_or_default()
                ));
            }
            eprintln!(
                "scale: {} clients joined in {:.1} s (p50 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms, load generator busy {:.2}), broadcast reached {} in {:.2} s, {:.1} KiB per connection",
                s.joined, s.join_all_s, s.connect_join_p50_ms, s.connect_join_p99_ms, s.connect_join_max_ms, s.generator_busy, s.broadcast_reached, s.broadcast_s, s.kib_per_idle_connection
            );
            report.scale = Some(s);
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);

    let markdown = markdown(&report);
    println!("{markdown}");
    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out)?;
        // A quick or smoke run never overwrites the day's full results.
        let name = cli.name.clone().unwrap_or_else(|| match report.mode {
            "full" => report.date.clone(),
            mode => format!("{}-{mode}", report.date),
        });
        std::fs::write(
            out.join(format!("{name}.json")),
            serde_json::to_string_pretty(&report)?,
        )?;
        std::fs::write(out.join(format!("{name}.md")), &markdown)?;
        eprintln!("wrote {}/{name}.json and .md", out.display());
    }
    if !report.failures.is_empty() {
        anyhow::bail!(
            "the harness found lost or out-of-order messages: {:?}",
            report.failures
        );
    }
    Ok(())
}

/// The systems' indices in the order round `k` (from 0) takes them: as listed in even rounds,
/// reversed in odd ones, so that none is always first or last.
fn in_turn(n: usize, k: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| if k.is_multiple_of(2) { i } else { n - 1 - i })
}

/// `items` without repeats, each where it first came.
fn first_seen<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for x in items {
        if !seen.contains(&x) {
            seen.push(x);
        }
    }
    seen
}

fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Each round behind the fixed-rate latency rows: p50 / p99 (µs) of every system, a rate at a
/// time (nothing when the run had one round).
fn latency_rounds_table(out: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let Some(last) = r.latency_rounds.iter().map(|x| x.round).max() else {
        return;
    };
    if last < 2 {
        return;
    }
    let backends = first_seen(r.latency_rounds.iter().map(|x| x.backend));
    let rates = first_seen(r.latency_rounds.iter().map(|x| x.result.rate));
    for rate in rates {
        header(
            out,
            &format!(
                "{rate}/s, round (odd rounds in this order, even rounds reversed): p50 / p99 µs"
            ),
            &backends,
        );
        for round in 1..=last {
            let _ = write!(out, "| {round} |");
            for b in &backends {
                match r
                    .latency_rounds
                    .iter()
                    .find(|x| x.round == round && x.backend == *b && x.result.rate == rate)
                {
                    Some(x) => {
                        let _ = write!(out, " {:.0} / {:.0} |", x.result.p50_us, x.result.p99_us);
                    }
                    None => {
                        let _ = write!(out, " – |");
                    }
                }
            }
            let _ = writeln!(out);
        }
    }
}

/// A table's first two lines, after a blank one: `title`, then a column per system.
fn header(out: &mut String, title: &str, backends: &[&str]) {
    use std::fmt::Write as _;
    let _ = write!(out, "\n| {title} |");
    for b in backends {
        let _ = write!(out, " {b} |");
    }
    let _ = writeln!(out, "\n|---|{}", "---|".repeat(backends.len()));
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Benchmark {} ({} mode) on {}\n",
        r.date, r.mode, r.machine
    );
    let _ = writeln!(
        out,
        "QUIC systems: {}; congestion controller {:?}.\n",
        r.network, r.congestion
    );
    // In the order they were measured in (a row's systems in turn).
    let backends = first_seen(r.throughput.iter().map(|row| row.backend));
    let labels = first_seen(r.throughput.iter().map(|row| row.label.clone()));
    let find = |b: &str, l: &str| {
        r.throughput
            .iter()
            .find(|row| row.backend == b && row.label == l)
    };
    let _ = write!(out, "| deliveries/s (median, min–max) |");
    for b in &backends {
        let _ = write!(out, " {b} |");
    }
    let has = |b: &str| backends.contains(&b);
    let ratios: Vec<(&str, &str)> = [
        ("nats-tls", "÷ nats-tls"),
        ("nats", "÷ nats"),
        ("quinn", "÷ quinn"),
    ]
    .into_iter()
    .filter(|(b, _)| has(b) && has("signalbox"))
    .collect();
    for (_, title) in &ratios {
        let _ = write!(out, " signalbox {title} |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|{}", "---|".repeat(backends.len() + ratios.len()));
    for l in &labels {
        let _ = write!(out, "| {l} |");
        for b in &backends {
            match find(b, l) {
                Some(row) if row.runs.len() > 1 => {
                    let _ = write!(
                        out,
                        " {} ({}–{}) |",
                        fmt_rate(row.median_deliveries_per_s),
                        fmt_rate(row.min_deliveries_per_s),
                        fmt_rate(row.max_deliveries_per_s)
                    );
                }
                Some(row) => {
                    let _ = write!(out, " {} |", fmt_rate(row.median_deliveries_per_s));
                }
                None => {
                    let _ = write!(out, " – |");
                }
            }
        }
        for (b, _) in &ratios {
            match (find("signalbox", l), find(b, l)) {
                (Some(s), Some(o)) if o.median_deliveries_per_s > 0.0 => {
                    let _ = write!(
                        out,
                        " {:.2}× |",
                        s.median_deliveries_per_s / o.median_deliveries_per_s
                    );
                }
                _ => {
                    let _ = write!(out, " – |");
                }
            }
        }
        let _ = writeln!(out);
    }
    header(
        &mut out,
        "server CPU s per million deliveries, peak RSS of the row; load generator busy (its CPU time ÷ the window; ≥ 0.95 of its one core: the harness set the pace)",
        &backends,
    );
    for l in &labels {
        let _ = write!(out, "| {l} |");
        for b in &backends {
            match find(b, l) {
                Some(row) => {
                    let _ = write!(
                        out,
                        " {:.3} s, {} MiB; {:.2}{} |",
                        row.median_cpu_s_per_m,
                        row.peak_rss_kib / 1024,
                        row.harness_busy,
                        if row.harness_busy >= 0.95 { " ⚠" } else { "" }
                    );
                }
                None => {
                    let _ = write!(out, " – |");
                }
            }
        }
        let _ = writeln!(out);
    }
    if !r.latency.is_empty() {
        let _ = writeln!(
            out,
            "\n| latency (µs, from intended send time; rounds: a rate measured in that many alternated rounds, each quantile the median over them, max and publisher lag the largest; publisher lag: how late, at most, a signal left its publisher; ⚠ from 10 ms: the rate was not kept, by the harness's core or the server's back-pressure, and the latency is mostly that backlog) | rate | rounds | p50 | p90 | p99 | p99.9 | max | publisher lag |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for row in &r.latency {
            let l = &row.result;
            let _ = writeln!(
                out,
                "| {} {} | {}/s | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}{} |",
                row.backend,
                row.label,
                l.rate,
                row.rounds,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                l.publisher_lag_max_us,
                if l.publisher_lag_max_us >= 10_000.0 {
                    " ⚠"
                } else {
                    ""
                }
            );
        }
    }
    latency_rounds_table(&mut out, r);
    if let Some(s) = &r.scale {
        let _ = writeln!(
            out,
            "\nScale (signalbox): {} of {} clients joined one session in {:.1} s ({:.0} joins/s, {} connecting at a time; connect+join p50 {:.1} ms, p99 {:.1} ms, slowest {:.0} ms; relay CPU {:.2} s; load generator busy {:.2}); one broadcast reached {} in {:.2} s; relay RSS {} → {} MiB half a second after the last join ({:.1} KiB per connection, the storm's news still going out), {} MiB at rest five seconds after it ({:.1} KiB per idle connection).",
            s.joined,
            s.clients,
            s.join_all_s,
            s.joins_per_s,
            scale::IN_FLIGHT,
            s.connect_join_p50_ms,
            s.connect_join_p99_ms,
            s.connect_join_max_ms,
            s.relay_cpu_s,
            s.generator_busy,
            s.broadcast_reached,
            s.broadcast_s,
            s.rss_before_kib / 1024,
            s.rss_after_kib / 1024,
            s.kib_per_connection_after_storm,
            s.rss_at_rest_kib / 1024,
            s.kib_per_idle_connection
        );
    }
    if !r.cluster.is_empty() {
        let _ = writeln!(
            out,
            "\n| cluster: deliveries/s (median) | 1 relay | 3 nodes + nats-server | 3 nodes ÷ 1 | 3 nodes CPU s per million |\n|---|---|---|---|---|"
        );
        for c in &r.cluster {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}× | {:.3} s |",
                c.label,
                fmt_rate(c.one_node_deliveries_per_s),
                fmt_rate(c.three_nodes_deliveries_per_s),
                c.three_nodes_deliveries_per_s / c.one_node_deliveries_per_s.max(1.0),
                c.three_nodes_cpu_s_per_m
            );
        }
    }
    if !r.floor_drops.is_empty() {
        let _ = writeln!(
            out,
            "\nThe bare quinn forwarder has no back-pressure and drops what its route queues \
             cannot hold: {:?}",
            r.floor_drops
        );
    }
    if r.failures.is_empty() && r.floor_drops.is_empty() {
        let _ = writeln!(out, "\nEvery run: no message lost, none out of order.");
    } else if r.failures.is_empty() {
        let _ = writeln!(
            out,
            "\nEvery other run: no message lost, none out of order."
        );
    } else {
        let _ = writeln!(out, "\nFAILURES: {:?}", r.failures);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &'static str, workload: Workload, rate: f64) -> Row {
        let run = Throughput {
            deliveries_per_s: rate,
            lost: 0,
            out_of_order: 0,
            server_cpu_s_per_m: 1.0,
            server_peak_rss_kib: 1024,
            harness_busy: 0.5,
        };
        Row {
            backend,
            workload,
            label: workload.label(),
            runs: vec![run],
            median_deliveries_per_s: rate,
            min_deliveries_per_s: rate,
            max_deliveries_per_s: rate,
            median_cpu_s_per_m: 1.0,
            peak_rss_kib: 1024,
            harness_busy: 0.5,
        }
    }

    /// Rows come a workload at a time, every system in turn: each system is one column, and
    /// a row's ratio compares the two systems' figures for that row.
    #[test]
    fn interleaved_rows_make_one_column_per_system() {
        let w = |subs| Workload {
            pubs: 1,
            subs,
            size: 64,
            targeted: false,
        };
        let report = Report {
            date: "2026-12-07".into(),
            machine: "test".into(),
            mode: "quick",
            throughput: vec![
                row("signalbox", w(10), 2e6),
                row("nats", w(10), 1e6),
                row("signalbox", w(100), 3e6),
                row("nats", w(100), 4e6),
            ],
            latency: Vec::new(),
            latency_rounds: Vec::new(),
            scale: None,
            network: "loopback".into(),
            congestion: Congestion::default(),
            cluster: Vec::new(),
            failures: Vec::new(),
            floor_drops: Vec::new(),
        };
        let md = markdown(&report);
        let first = md
            .lines()
            .find(|l| l.starts_with("| deliveries/s"))
            .expect("the throughput table");
        assert_eq!(
            first,
            "| deliveries/s (median, min–max) | signalbox | nats | signalbox ÷ nats |"
        );
        assert!(md.contains("| 1→10 broadcast, 64 B | 2.00 M/s | 1.00 M/s | 2.00× |"));
        assert!(md.contains("| 1→100 broadcast, 64 B | 3.00 M/s | 4.00 M/s | 0.75× |"));
    }

    #[test]
    fn systems_take_turns_in_alternating_order() {
        assert_eq!(in_turn(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(in_turn(3, 1).collect::<Vec<_>>(), [2, 1, 0]);
        assert_eq!(in_turn(3, 2).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(first_seen([2, 1, 2, 3, 1]), [2, 1, 3]);
    }
}
