//! Starting each system under test as its own process, pinned to one core, and reading its
//! CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum as _;
use signalbox_proto::Fingerprint;
use signalbox_relay::Congestion;

use crate::backends::{Kind, Target};

/// A running server: its processes (one, or a cluster's NATS server and nodes).
pub(crate) struct Server {
    children: Vec<Child>,
    pub(crate) target: Target,
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The congestion controller the relay and the quinn forwarder are started with.
static CONGESTION: std::sync::OnceLock<Congestion> = std::sync::OnceLock::new();

/// Sets the congestion controller of the servers this harness starts.
pub(crate) fn use_congestion(c: Congestion) {
    let _ = CONGESTION.set(c);
}

/// Starts `serve-relay` (or `serve-quinn`) and reads where it listens.
fn start_own(
    core: Option<usize>,
    dir: &Path,
    bare: bool,
    cluster: Option<&str>,
) -> anyhow::Result<(Child, SocketAddr, Fingerprint)> {
    let me = std::env::current_exe()?;
    let mut cmd = pinned(core, &me);
    cmd.arg(if bare { "serve-quinn" } else { "serve-relay" })
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = cluster {
        cmd.arg("--cluster").arg(url);
    }
    let congestion = CONGESTION.get().copied().unwrap_or_default();
    if let Some(v) = congestion.to_possible_value() {
        cmd.arg("--congestion").arg(v.get_name());
    }
    let mut child = cmd.spawn().context("starting the server")?;
    let stdout = child.stdout.take().context("server stdout")?;
    // A profiler in `SIGNALBOX_BENCH_WRAP` may print lines of its own first.
    let ours = |l: &std::io::Result<String>| match l {
        Ok(l) => l.starts_with("addr ") || l.starts_with("fp "),
        Err(_) => true,
    };
    let mut lines = BufReader::new(stdout).lines().filter(ours);
    let addr: SocketAddr = lines
        .next()
        .context("server exited")??
        .strip_prefix("addr ")
        .context("addr line")?
        .parse()?;
    let fp: Fingerprint = lines
        .next()
        .context("server exited")??
        .strip_prefix("fp ")
        .context("fp line")?
        .parse()?;
    Ok((child, addr, fp))
}

/// Starts nats-server on a free loopback port; waits until it takes connections.
fn start_nats(
    core: Option<usize>,
    dir: &Path,
    tls: bool,
) -> anyhow::Result<(Child, SocketAddr, Option<PathBuf>)> {
    let program = which("nats-server")
        .context("nats-server is not installed (apt-get install nats-server)")?;
    let port = free_port()?;
    let mut cmd = pinned(core, &program);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut ca_file = None;
    if tls {
        let (cert, key) = tls_files(dir)?;
        cmd.arg("--tls")
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key);
        ca_file = Some(cert);
    }
    let child = cmd.spawn().context("starting nats-server")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nats-server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, addr, ca_file))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `command` under `taskset -c core` when a core is given, and under the command in
/// `SIGNALBOX_BENCH_WRAP` when set (a profiler, e.g. `heaptrack`; split at spaces).
fn pinned(core: Option<usize>, program: &Path) -> Command {
    let mut line: Vec<std::ffi::OsString> = Vec::new();
    if let Some(c) = core {
        line.extend(["taskset".into(), "-c".into(), c.to_string().into()]);
    }
    if let Ok(wrap) = std::env::var("SIGNALBOX_BENCH_WRAP") {
        line.extend(wrap.split_whitespace().map(Into::into));
    }
    line.push(program.into());
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..]);
    cmd
}

/// Makes a self-signed certificate for 127.0.0.1 (nats-server TLS), returns (cert, key) paths.
pub(crate) fn tls_files(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let cert = dir.join("nats-cert.pem");
    let key = dir.join("nats-key.pem");
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert, key))
}

/// Starts `kind` on `core`, with files in `dir`. A cluster's NATS server and three nodes
/// share that core, as a single server does.
pub(crate) fn start(kind: Kind, core: Option<usize>, dir: &Path) -> anyhow::Result<Server> {
    let target = |addr, fingerprint, ca_file, nodes| Target {
        kind,
        addr,
        fingerprint,
        ca_file,
        nodes,
    };
    match kind {
        Kind::Signalbox | Kind::Quinn => {
            let (child, addr, fp) = start_own(core, dir, kind == Kind::Quinn, None)?;
            Ok(Server {
                children: vec![child],
                target: target(addr, Some(fp), None, Vec::new()),
            })
        }
        Kind::Nats | Kind::NatsTls => {
            let (child, addr, ca_file) = start_nats(core, dir, kind == Kind::NatsTls)?;
            Ok(Server {
                children: vec![child],
                target: target(addr, None, ca_file, Vec::new()),
            })
        }
        Kind::Cluster => {
            let (nats, nats_addr, _) = start_nats(core, dir, false)?;
            let url = format!("nats://{nats_addr}");
            let mut children = vec![nats];
            let mut nodes = Vec::new();
            // One token secret for all three: the key that seals cluster messages derives
            // from it (nodes with different secrets refuse each other).
            let secret = format!("bench-cluster-secret-{}", std::process::id()).repeat(2);
            for n in 0..3 {
                let node_dir = dir.join(format!("node{n}"));
                std::fs::create_dir_all(&node_dir)?;
                std::fs::write(node_dir.join("token-secret"), &secret)?;
                let (child, addr, fp) = start_own(core, &node_dir, false, Some(&url))?;
                children.push(child);
                nodes.push((addr, fp));
            }
            // The nodes find each other through their heartbeats.
            std::thread::sleep(Duration::from_millis(1500));
            Ok(Server {
                children,
                target: target(nodes[0].0, Some(nodes[0].1), None, nodes),
            })
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether nats-server can be started here.
pub(crate) fn nats_available() -> bool {
    which("nats-server").is_some()
}

impl Server {
    /// CPU seconds the server has used (user + system; all its processes).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.children.iter().map(|c| cpu_seconds(c.id())).sum()
    }

    /// Starts a new peak: the next [`Server::peak_rss_kib`] is the high-water mark from now
    /// on, not one an earlier row left (Linux: `5` to `/proc/PID/clear_refs`).
    pub(crate) fn reset_peak(&self) {
        for c in &self.children {
            let _ = std::fs::write(format!("/proc/{}/clear_refs", c.id()), "5");
        }
    }

    /// The server's peak resident memory, in KiB (all its processes).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.children
            .iter()
            .map(|c| status_kib(c.id(), "VmHWM:"))
            .sum()
    }

    /// The server's resident memory now, in KiB (all its processes).
    pub(crate) fn rss_kib(&self) -> u64 {
        self.children
            .iter()
            .map(|c| status_kib(c.id(), "VmRSS:"))
            .sum()
    }
}

/// CPU seconds this process (the load generator) has used.
pub(crate) fn own_cpu_seconds() -> f64 {
    cpu_seconds_at("/proc/self/stat")
}

/// CPU seconds process `pid` has used (taskset execs the server, so the pid is its own).
fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_at(&format!("/proc/{pid}/stat"))
}

fn cpu_seconds_at(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
