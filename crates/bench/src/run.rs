//! One measurement: connect, warm up, measure, drain, check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;

use crate::backends::{self, Target};
use crate::payload::Stamp;
use crate::servers::Server;
use crate::stats::Stats;

/// How far (in messages) a publisher may run ahead of its slowest receiver...
const WINDOW: u64 = 1000;
/// ...and at most this much data ahead of a receiver across all publishers (half of the
/// receiver queue the benchmark gives every system: nats-server's 64 MiB max_pending).
const WINDOW_BYTES: u64 = 32 << 20;

/// Publishers → subscribers, message size, everyone or one.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Workload {
    pub(crate) pubs: usize,
    pub(crate) subs: usize,
    pub(crate) size: usize,
    pub(crate) targeted: bool,
}

impl Workload {
    pub(crate) fn label(&self) -> String {
        let size = if self.size >= 1024 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        format!(
            "{}→{} {}, {size}",
            self.pubs,
            self.subs,
            if self.targeted {
                "targeted"
            } else {
                "broadcast"
            }
        )
    }

    /// Deliveries per message.
    fn fanout(&self) -> u64 {
        if self.targeted { 1 } else { self.subs as u64 }
    }
}

/// What one throughput run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Throughput {
    pub(crate) deliveries_per_s: f64,
    pub(crate) lost: u64,
    pub(crate) out_of_order: u64,
    pub(crate) server_cpu_s_per_m: f64,
    /// The server's peak RSS during this run (the high-water mark is reset before it).
    pub(crate) server_peak_rss_kib: u64,
    /// The load generator's CPU time over the window ÷ the window: near its cores (1 when
    /// pinned to one), the harness, not the server, set the pace.
    pub(crate) harness_busy: f64,
}

/// What one latency run measured (µs).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) rate: u64,
    pub(crate) count: u64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) lost: u64,
    /// How late, at most, a publisher sent a signal after its intended time (after the
    /// warm-up): large, and the rate was not kept (the harness's core was full, or the
    /// server's back-pressure held the publisher), so the latency is mostly that backlog.
    pub(crate) publisher_lag_max_us: f64,
}

impl Latency {
    /// Several measurements at one rate as one: each quantile the median over them (as the
    /// throughput rows' medians are taken), the maximum and the publisher lag the largest,
    /// counts and losses summed.
    pub(crate) fn summary(rate: u64, of: &[&Latency]) -> Latency {
        let median = |f: fn(&Latency) -> f64| crate::median(of.iter().map(|l| f(l)).collect());
        let largest = |f: fn(&Latency) -> f64| of.iter().map(|l| f(l)).fold(0.0, f64::max);
        Latency {
            rate,
            count: of.iter().map(|l| l.count).sum(),
            p50_us: median(|l| l.p50_us),
            p90_us: median(|l| l.p90_us),
            p99_us: median(|l| l.p99_us),
            p999_us: median(|l| l.p999_us),
            max_us: largest(|l| l.max_us),
            lost: of.iter().map(|l| l.lost).sum(),
            publisher_lag_max_us: largest(|l| l.publisher_lag_max_us),
        }
    }
}

static SESSIONS: AtomicU64 = AtomicU64::new(0);

fn session_name() -> String {
    format!("bench{}", SESSIONS.fetch_add(1, Ordering::Relaxed))
}

/// Closed loop: every publisher sends as fast as its window allows.
pub(crate) async fn throughput(
    server: &Server,
    w: Workload,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let target = &server.target;
    server.reset_peak();
    let stats = Arc::new(Stats::new(w.subs, w.pubs, false));
    let conn = backends::connect(
        target,
        &session_name(),
        w.pubs,
        w.subs,
        stats.clone(),
        false,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let all_subs: Arc<Vec<usize>> = Arc::new((0..w.subs).collect());
    let window = WINDOW.min((WINDOW_BYTES / (w.pubs as u64 * w.size as u64)).max(8));
    for (i, mut publisher) in conn.publishers.into_iter().enumerate() {
        let stats = stats.clone();
        let stop = stop.clone();
        let subs = all_subs.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Stay within the window of the slowest receiver.
                if sent.is_multiple_of(32) {
                    loop {
                        let behind = if w.targeted {
                            let got: u64 = subs.iter().map(|&s| stats.min_received(i, &[s])).sum();
                            sent.saturating_sub(got)
                        } else {
                            sent.saturating_sub(stats.min_received(i, &subs))
                        };
                        if behind < window || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let notified = stats.progress.notified();
                        let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
                    }
                }
                sent += 1;
                let stamp = Stamp {
                    sender: i as u32,
                    seq: sent,
                    t_ns: stats.now_ns(),
                    size: w.size,
                };
                let to = w.targeted.then(|| (sent as usize) % w.subs);
                if let Err(e) = publisher.send(to, stamp, &mut buf).await {
                    // Counted as sent, so its deliveries show as lost: say why.
                    tracing::warn!(publisher = i, seq = sent, "send failed: {e:#}");
                    break;
                }
            }
            (publisher, sent)
        }));
    }
    tokio::time::sleep(warmup).await;
    let (d0, c0, h0, t0) = (
        stats.delivered.load(Ordering::Relaxed),
        server.cpu_seconds(),
        crate::servers::own_cpu_seconds(),
        Instant::now(),
    );
    tokio::time::sleep(duration).await;
    let (d1, c1, h1, t1) = (
        stats.delivered.load(Ordering::Relaxed),
        server.cpu_seconds(),
        crate::servers::own_cpu_seconds(),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    let mut expected = 0;
    let mut publishers = Vec::new();
    for t in tasks {
        let (p, sent) = t.await?;
        expected += sent * w.fanout();
        publishers.push(p);
    }
    let lost = drain(&stats, expected).await;
    for p in publishers {
        p.close().await;
    }
    drop(conn.keep);
    for s in conn.subscribers {
        s.abort();
    }
    let delivered = d1 - d0;
    Ok(Throughput {
        deliveries_per_s: delivered as f64 / (t1 - t0).as_secs_f64(),
        lost,
        out_of_order: stats.out_of_order.load(Ordering::Relaxed),
        server_cpu_s_per_m: if delivered > 0 {
            (c1 - c0) / delivered as f64 * 1e6
        } else {
            0.0
        },
        server_peak_rss_kib: server.peak_rss_kib(),
        harness_busy: (h1 - h0) / (t1 - t0).as_secs_f64(),
    })
}

/// Waits until `expected` deliveries arrived (or nothing moves for 3 s); returns how many
/// did not.
async fn drain(stats: &Stats, expected: u64) -> u64 {
    let mut last = stats.delivered.load(Ordering::Relaxed);
    let mut still = Instant::now();
    loop {
        let now = stats.delivered.load(Ordering::Relaxed);
        if now >= expected {
            return 0;
        }
        if now != last {
            last = now;
            still = Instant::now();
        } else if still.elapsed() > Duration::from_secs(3) {
            return expected - now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Open loop at `rate` deliveries per second; latency from each message's *intended* send
/// time, so a stall shows as latency (no coordinated omission).
pub(crate) async fn latency(
    target: &Target,
    w: Workload,
    rate: u64,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let stats = Arc::new(Stats::new(w.subs, w.pubs, true));
    let conn =
        backends::connect(target, &session_name(), w.pubs, w.subs, stats.clone(), true).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_pub = rate as f64 / (w.pubs as f64 * w.fanout() as f64);
    let interval_ns = (1e9 / per_pub).max(1.0);
    let start_ns = stats.now_ns();
    let measured_ns = start_ns + warmup.as_nanos() as u64;
    let end_ns = start_ns + (warmup + duration).as_nanos() as u64;
    let mut tasks = Vec::new();
    for (i, mut publisher) in conn.publishers.into_iter().enumerate() {
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut sent = 0u64;
            let mut lag_max = 0u64;
            loop {
                let intended = start_ns + (sent as f64 * interval_ns) as u64;
                if intended >= end_ns {
                    break;
                }
                // tokio's timer has millisecond granularity: sleep until just before the
                // intended time, then yield until it (the harness has its own core).
                loop {
                    let now = stats.now_ns();
                    if now >= intended {
                        if intended >= measured_ns {
                            lag_max = lag_max.max(now - intended);
                        }
                        break;
                    }
                    if intended - now > 1_500_000 {
                        tokio::time::sleep(Duration::from_nanos(intended - now - 1_200_000)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                sent += 1;
                let stamp = Stamp {
                    sender: i as u32,
                    seq: sent,
                    t_ns: intended,
                    size: w.size,
                };
                let to = w.targeted.then(|| (sent as usize) % w.subs);
                if let Err(e) = publisher.send(to, stamp, &mut buf).await {
                    // Counted as sent, so its deliveries show as lost: say why.
                    tracing::warn!(publisher = i, seq = sent, "send failed: {e:#}");
                    break;
                }
            }
            (publisher, sent, lag_max)
        }));
    }
    tokio::time::sleep(warmup).await;
    stats.reset_latency();
    let mut expected = 0;
    let mut lag_max = 0;
    let mut publishers = Vec::new();
    for t in tasks {
        let (p, sent, lag) = t.await?;
        expected += sent * w.fanout();
        lag_max = lag_max.max(lag);
        publishers.push(p);
    }
    let lost = drain(&stats, expected).await;
    for p in publishers {
        p.close().await;
    }
    drop(conn.keep);
    for s in conn.subscribers {
        s.abort();
    }
    // Subscribers flush their last latencies as they end.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let h = stats
        .histogram()
        .unwrap_or_else(|| hdrhistogram::Histogram::new(3).expect("valid"));
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        rate,
        count: h.len(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: h.max() as f64 / 1000.0,
        lost,
        publisher_lag_max_us: lag_max as f64 / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::Latency;

    fn at(p50: f64, max: f64, lag: f64) -> Latency {
        Latency {
            rate: 1_000,
            count: 10,
            p50_us: p50,
            p90_us: p50 * 2.0,
            p99_us: p50 * 3.0,
            p999_us: p50 * 4.0,
            max_us: max,
            lost: 1,
            publisher_lag_max_us: lag,
        }
    }

    #[test]
    fn a_summary_takes_each_quantiles_median_and_the_largest_extremes() {
        let rounds = [
            at(300.0, 900.0, 5.0),
            at(100.0, 4000.0, 70.0),
            at(200.0, 800.0, 9.0),
        ];
        let s = Latency::summary(1_000, &rounds.iter().collect::<Vec<_>>());
        assert_eq!(s.rate, 1_000);
        assert_eq!(
            (s.p50_us, s.p90_us, s.p99_us, s.p999_us),
            (200.0, 400.0, 600.0, 800.0)
        );
        assert_eq!((s.max_us, s.publisher_lag_max_us), (4000.0, 70.0));
        assert_eq!((s.count, s.lost), (30, 3));
        // One round is itself.
        let one = Latency::summary(1_000, &[&rounds[1]]);
        assert_eq!((one.p50_us, one.max_us), (100.0, 4000.0));
    }
}
