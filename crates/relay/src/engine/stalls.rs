//! The budget watch: which receivers hold a session's spent budget, without I/O.
//!
//! While a session's queue budget is spent, its senders wait (the relay stops reading them).
//! Whoever waits scans the receivers every [`SCAN`] and hands their progress to a
//! [`StallWatch`], which says whom to close as `slowConsumer`:
//!
//! - among the receivers at least as far behind as the average of those with a backlog,
//! - one that has read nothing (no batch taken, no flow-control credit granted) for
//!   [`STALLED`], unless it is away (a lost connection may resume);
//! - once the budget has been spent for `patience` (the relay's `write_timeout`), one at least
//!   twice as far behind as the lower median of the members receiving in this watch: an
//!   outlier that trickles.
//!
//! Readers that are slow together are never closed: they set the senders' pace. A gap
//! between scans means the budget had room meanwhile, and the watch starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use signalbox_proto::ConnectionId;

/// How long a receiver with a backlog may read nothing at all, while its session's budget is
/// spent and a sender waits, before it counts as one that cannot keep up.
pub(crate) const STALLED: Duration = Duration::from_secs(2);
/// How often a waiting sender looks at the receivers' progress.
pub(crate) const SCAN: Duration = Duration::from_millis(100);

/// One receiver as a scan sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    pub(crate) id: ConnectionId,
    /// Bytes queued toward it (0 once it is closing).
    pub(crate) backlog: usize,
    /// Batches its routes have taken from its queues, ever.
    pub(crate) drains: u64,
    /// Flow-control credit it has granted, ever (looked at only while it has a backlog).
    pub(crate) credit: u64,
    /// Whether its connection is lost and it may resume.
    pub(crate) away: bool,
}

/// What the scans of one spent budget have seen.
#[derive(Debug, Default)]
pub(crate) struct StallWatch {
    last_scan: Option<Instant>,
    spent_since: Option<Instant>,
    scans: u64,
    seen: HashMap<ConnectionId, Progress>,
}

/// What the scans saw of one member's progress.
#[derive(Debug)]
struct Progress {
    drains: u64,
    credit: u64,
    /// Since when neither has moved.
    since: Instant,
    /// Whether it received anything in this watch (a backlog, or batches taken).
    active: bool,
    /// The scan that saw it last (members that left are forgotten).
    scan: u64,
}

impl StallWatch {
    /// Whether a scan is due at `now` (one per [`SCAN`], whoever waits).
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.last_scan.is_none_or(|t| now - t >= SCAN / 2)
    }

    /// Looks at the session's `members` at `now`; returns those to close (see the module's
    /// notes). The budget has been spent since the first scan of this watch.
    pub(crate) fn scan(
        &mut self,
        now: Instant,
        patience: Duration,
        members: &[Observed],
    ) -> Vec<ConnectionId> {
        if !self.due(now) {
            return Vec::new();
        }
        if self.last_scan.is_none_or(|t| now - t > SCAN * 5) {
            self.spent_since = Some(now);
            self.seen.clear();
        }
        self.last_scan = Some(now);
        self.scans += 1;
        let scan = self.scans;
        let (mut behind, mut total) = (0usize, 0usize);
        let mut receiving = Vec::new();
        for m in members {
            let p = self.seen.entry(m.id).or_insert(Progress {
                drains: m.drains,
                credit: 0,
                since: now,
                active: false,
                scan,
            });
            p.scan = scan;
            if p.drains != m.drains {
                p.drains = m.drains;
                p.since = now;
                p.active = true;
            }
            if m.backlog > 0 {
                p.active = true;
                if p.credit != m.credit {
                    p.credit = m.credit;
                    p.since = now;
                }
                behind += 1;
                total += m.backlog;
            }
            if p.active {
                receiving.push(m.backlog);
            }
        }
        self.seen.retain(|_, p| p.scan == scan);
        if behind == 0 {
            return Vec::new();
        }
        let average = total / behind;
        let out_of_patience = self
            .spent_since
            .is_some_and(|since| now - since >= patience);
        let median = if out_of_patience && !receiving.is_empty() {
            let mid = (receiving.len() - 1) / 2;
            *receiving.select_nth_unstable(mid).1
        } else {
            usize::MAX / 2
        };
        let mut close = Vec::new();
        let mut outliers = false;
        for m in members {
            if m.backlog == 0 || m.backlog < average {
                continue;
            }
            let Some(p) = self.seen.get(&m.id) else {
                continue;
            };
            let stalled = now - p.since >= STALLED && !m.away;
            let outlier = m.backlog >= 2 * median;
            if stalled || outlier {
                self.seen.remove(&m.id);
                close.push(m.id);
                outliers |= outlier;
            }
        }
        if outliers {
            // The others get a fresh `patience` before the next outlier.
            self.spent_since = Some(now);
        }
        close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<ConnectionId> {
        (0..n).map(|_| ConnectionId::random()).collect()
    }

    /// Scans every [`SCAN`] for `secs`, with `step` saying how each member moved; returns the
    /// closed ones and when.
    fn run(
        watch: &mut StallWatch,
        start: Instant,
        secs: u64,
        patience: Duration,
        mut members: Vec<Observed>,
        step: impl Fn(usize, &mut Observed),
    ) -> Vec<(ConnectionId, Duration)> {
        let mut closed = Vec::new();
        let scans = secs * 1000 / SCAN.as_millis() as u64;
        for k in 1..=scans {
            let now = start + SCAN * k as u32;
            for (i, m) in members.iter_mut().enumerate() {
                step(i, m);
            }
            for id in watch.scan(now, patience, &members) {
                closed.push((id, now - start));
            }
            // A closed receiver's queue is freed: the driver shows it with no backlog.
            for m in members.iter_mut() {
                if closed.iter().any(|(c, _)| *c == m.id) {
                    m.backlog = 0;
                }
            }
        }
        closed
    }

    fn observed(id: ConnectionId, backlog: usize) -> Observed {
        Observed {
            id,
            backlog,
            drains: 0,
            credit: 0,
            away: false,
        }
    }

    #[test]
    fn a_receiver_that_reads_nothing_is_closed_after_stalled_unless_away() {
        let id = ids(3);
        let members = vec![
            observed(id[0], 1 << 20), // silent
            observed(id[1], 1 << 20), // reads
            Observed {
                away: true,
                ..observed(id[2], 1 << 20)
            },
        ];
        let mut watch = StallWatch::default();
        let closed = run(
            &mut watch,
            Instant::now(),
            5,
            Duration::from_secs(60),
            members,
            |i, m| {
                if i == 1 {
                    m.drains += 1;
                }
            },
        );
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].0, id[0]);
        assert!(closed[0].1 >= STALLED && closed[0].1 <= STALLED + SCAN * 2);
    }

    #[test]
    fn flow_control_credit_counts_as_reading() {
        let id = ids(1);
        let mut watch = StallWatch::default();
        let closed = run(
            &mut watch,
            Instant::now(),
            10,
            Duration::from_secs(60),
            vec![observed(id[0], 1 << 20)],
            |_, m| m.credit += 1,
        );
        assert!(closed.is_empty());
    }

    #[test]
    fn readers_slow_together_set_the_pace_and_a_trickler_goes_after_patience() {
        let id = ids(5);
        // Four readers with about the same backlog, all reading; one far behind that trickles.
        let mut members: Vec<_> = id.iter().map(|&i| observed(i, 1 << 20)).collect();
        members[4].backlog = 8 << 20;
        let patience = Duration::from_secs(3);
        let mut watch = StallWatch::default();
        let closed = run(&mut watch, Instant::now(), 10, patience, members, |_, m| {
            m.drains += 1;
        });
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].0, id[4]);
        assert!(closed[0].1 >= patience && closed[0].1 <= patience + SCAN * 2);
    }

    #[test]
    fn idle_members_do_not_pull_the_median_down() {
        // Two receivers far behind and reading at the same pace, and many idle members that
        // received nothing in this watch: nobody is an outlier.
        let mut members: Vec<_> = ids(20).into_iter().map(|i| observed(i, 0)).collect();
        members[0].backlog = 4 << 20;
        members[1].backlog = 4 << 20;
        let mut watch = StallWatch::default();
        let closed = run(
            &mut watch,
            Instant::now(),
            10,
            Duration::from_secs(1),
            members,
            |i, m| {
                if i < 2 {
                    m.drains += 1;
                }
            },
        );
        assert!(closed.is_empty(), "{closed:?}");
    }

    #[test]
    fn a_gap_between_scans_starts_the_watch_over() {
        let id = ids(1);
        let start = Instant::now();
        let mut watch = StallWatch::default();
        let m = [observed(id[0], 1 << 20)];
        assert!(watch.scan(start, Duration::from_secs(60), &m).is_empty());
        // The budget had room for a while (no scans), then is spent again: a fresh 2 s.
        let later = start + Duration::from_secs(5);
        let mut closed_at = None;
        for k in 0..40u32 {
            let now = later + SCAN * k;
            if !watch.scan(now, Duration::from_secs(60), &m).is_empty() {
                closed_at = Some(now - later);
                break;
            }
        }
        assert_eq!(closed_at, Some(STALLED));
        // Too soon after the last scan: skipped.
        assert!(!watch.due(later + STALLED + SCAN / 4));
        assert!(watch.due(later + STALLED + SCAN));
    }
}
