//! Scale and cost of idle connections: many clients in one session on this machine.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use signalbox_client::{Client, ConnectOptions, Event, Signal};
use signalbox_proto::SessionId;

use crate::servers::Server;

/// What the scale run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scale {
    pub(crate) clients: usize,
    pub(crate) joined: usize,
    pub(crate) join_all_s: f64,
    /// Joins per second over the storm.
    pub(crate) joins_per_s: f64,
    pub(crate) connect_join_p50_ms: f64,
    pub(crate) connect_join_p99_ms: f64,
    /// The slowest join: one join that waits for a timer sets the storm's length alone.
    pub(crate) connect_join_max_ms: f64,
    /// The relay's CPU seconds over the storm.
    pub(crate) relay_cpu_s: f64,
    /// The load generator's CPU time over the storm ÷ its length (≥ 0.95: the harness set
    /// the pace).
    pub(crate) generator_busy: f64,
    pub(crate) broadcast_reached: usize,
    pub(crate) broadcast_s: f64,
    pub(crate) rss_before_kib: u64,
    /// The relay's RSS half a second after the last join, while it still sends the storm's
    /// news and its allocator still holds what the storm freed.
    pub(crate) rss_after_kib: u64,
    pub(crate) kib_per_connection_after_storm: f64,
    /// The relay's RSS with every client joined and at rest ([`AT_REST`] after the last join,
    /// before the broadcast).
    pub(crate) rss_at_rest_kib: u64,
    pub(crate) kib_per_idle_connection: f64,
    /// Why the first failed join failed, if one did.
    pub(crate) first_error: Option<String>,
}

/// When the relay's memory per idle connection is read: this long after the last join.
const AT_REST: Duration = Duration::from_secs(5);

/// Clients connecting at once during the join storm.
pub(crate) const IN_FLIGHT: usize = 50;

/// Joins `n` clients to one session (over a few shared UDP sockets), [`IN_FLIGHT`] connects
/// at a time (a new one starts as soon as one is in), then broadcasts one signal and waits
/// until every client has it.
pub(crate) async fn run(server: &Server, n: usize) -> anyhow::Result<Scale> {
    let target = &server.target;
    let endpoints: Vec<quinn::Endpoint> = (0..(n / 200).max(1))
        .map(|_| signalbox_client::client_endpoint("127.0.0.1:0".parse().expect("valid")))
        .collect::<Result<_, _>>()?;
    let options = |i: usize| {
        let mut o = ConnectOptions::new(
            "127.0.0.1",
            target.addr.port(),
            SessionId::new("scale").expect("valid"),
        );
        o.fingerprint = target.fingerprint;
        o.name = Some(format!("c{i}"));
        o.connect_timeout = Duration::from_secs(60);
        o
    };
    let rss_before = server.rss_kib();
    let relay_cpu_before = server.cpu_seconds();
    let own_cpu_before = crate::servers::own_cpu_seconds();
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    let mut join_times = Vec::with_capacity(n);
    let mut connecting = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut first_error = None;
    while next < n || !connecting.is_empty() {
        while next < n && connecting.len() < IN_FLIGHT {
            let ep = endpoints[next % endpoints.len()].clone();
            let o = options(next);
            connecting.spawn(async move {
                let t = Instant::now();
                let r = Client::connect_with(ep, o).await;
                (r, t.elapsed())
            });
            next += 1;
        }
        let Some(joined) = connecting.join_next().await else {
            break;
        };
        let (r, took) = joined?;
        // Every client drains its events (presence) as a real one would.
        let (client, mut events) = match r {
            Ok(x) => x,
            Err(e) => {
                // Counted (`joined` < `clients`), not fatal: the report says so.
                first_error.get_or_insert_with(|| format!("{e:#}"));
                continue;
            }
        };
        join_times.push(took);
        let (tx, rx) = tokio::sync::oneshot::channel::<Duration>();
        let started = Instant::now();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Some(e) = events.next().await {
                if let Event::Signal(s) = e
                    && s.r#type == "scale"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(started.elapsed());
                }
            }
        });
        clients.push((client, rx));
    }
    let join_all = start.elapsed();
    let relay_cpu_s = server.cpu_seconds() - relay_cpu_before;
    let generator_busy =
        (crate::servers::own_cpu_seconds() - own_cpu_before) / join_all.as_secs_f64().max(1e-9);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.rss_kib();
    join_times.sort();
    let quantile = |q: f64| {
        join_times
            .get(((join_times.len() as f64 * q) as usize).min(join_times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let (p50, p99) = (quantile(0.5), quantile(0.99));

    // At rest, before the broadcast: its routes (a task, a stream and a replay ring per
    // receiver) are the sender's, not what an idle connection costs.
    tokio::time::sleep(AT_REST.saturating_sub(start.elapsed() - join_all)).await;
    let rss_at_rest = server.rss_kib();

    let sent_at = Instant::now();
    let (sender, _) = clients.first().context("no client joined")?;
    sender
        .send(Signal::to_all("scale", "hello, everyone"))
        .await?
        .accepted()
        .await?;
    let mut reached = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, rx) in clients.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, rx)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            reached += 1;
        }
    }
    let broadcast = sent_at.elapsed();
    for (c, _) in &clients {
        c.close();
    }
    Ok(Scale {
        clients: n,
        joined: clients.len(),
        join_all_s: join_all.as_secs_f64(),
        joins_per_s: clients.len() as f64 / join_all.as_secs_f64().max(1e-9),
        connect_join_p50_ms: p50.as_secs_f64() * 1000.0,
        connect_join_p99_ms: p99.as_secs_f64() * 1000.0,
        connect_join_max_ms: join_times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        relay_cpu_s,
        generator_busy,
        broadcast_reached: reached,
        broadcast_s: broadcast.as_secs_f64(),
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        kib_per_connection_after_storm: rss_after.saturating_sub(rss_before) as f64 / n as f64,
        rss_at_rest_kib: rss_at_rest,
        kib_per_idle_connection: rss_at_rest.saturating_sub(rss_before) as f64 / n as f64,
        first_error,
    })
}
