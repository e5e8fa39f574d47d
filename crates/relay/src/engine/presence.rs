//! Presence pacing: `Joined` and `Left` news, batched so that a join storm stays cheap.
//!
//! Every member is told of every join and leave. In a join storm of N clients that is N²
//! frames; sent one by one, each is a packet (and an ACK) per member, and a control-queue
//! entry and a task wake-up per member per join. So a large session paces its presence (see
//! [`interval`]): news after a quiet moment goes out at once, but news within the interval of
//! the last batch waits for the rest of the interval and goes out with whatever else came
//! meanwhile, as one buffer shared by every member's control queue. Signals are not paced;
//! the driver sends the news held before a member's signal, so nobody gets a signal from a
//! member whose join is still held back.
//!
//! News is numbered (its *epoch*). A member that joins is told the news after its own join
//! only (its `Welcome` had the rest): each gets a slice of the shared batch.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// The least time between two presence batches of one session while news keeps coming: none
/// below [`PACE_FROM`] members, then [`PER_MEMBER`] per member up to [`INTERVAL_MAX`]. It
/// grows with the session so that a storm costs the relay about the same number of presence
/// packets per second whatever the session's size.
pub(crate) fn interval(members: usize) -> Duration {
    if members < PACE_FROM {
        return Duration::ZERO;
    }
    (PER_MEMBER * u32::try_from(members).unwrap_or(u32::MAX)).min(INTERVAL_MAX)
}

/// See [`interval`]: smaller sessions are told everything at once.
const PACE_FROM: usize = 100;
/// See [`interval`].
const PER_MEMBER: Duration = Duration::from_micros(250);
/// See [`interval`].
const INTERVAL_MAX: Duration = Duration::from_secs(2);

/// One session's presence news on its way out.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Encoded `Joined`/`Left` frames, back to back.
    buf: BytesMut,
    /// Where each frame starts in `buf`, and its epoch.
    starts: Vec<(u64, usize)>,
    /// The number of the latest news.
    epoch: u64,
    /// No batch goes out before this.
    next_at: Option<Instant>,
    /// A timer will take the batch at `next_at`.
    scheduled: bool,
}

/// When news just told goes out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Now: take the batch.
    Now,
    /// At this instant: take the batch then (start a timer).
    At(Instant),
    /// With the batch a timer already waits for.
    Held,
}

/// A batch of news, each member's part a slice of one buffer.
#[derive(Debug)]
pub(crate) struct News {
    bytes: Bytes,
    starts: Vec<(u64, usize)>,
}

impl Presence {
    /// Adds an encoded presence frame; returns its epoch and when the batch goes out.
    pub(crate) fn tell(&mut self, frame: &[u8], now: Instant) -> (u64, Due) {
        self.epoch += 1;
        self.starts.push((self.epoch, self.buf.len()));
        self.buf.extend_from_slice(frame);
        let due = if self.scheduled {
            Due::Held
        } else {
            match self.next_at {
                Some(at) if now < at => {
                    self.scheduled = true;
                    Due::At(at)
                }
                _ => Due::Now,
            }
        };
        (self.epoch, due)
    }

    /// The latest news' epoch (a member joining now is told only what comes after).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Takes the batch at `now` in a session of `members`; the next one waits for
    /// [`interval`]. None if there is no news.
    pub(crate) fn take(&mut self, now: Instant, members: usize) -> Option<News> {
        self.scheduled = false;
        if self.starts.is_empty() {
            return None;
        }
        self.next_at = Some(now + interval(members));
        Some(News {
            bytes: self.buf.split().freeze(),
            starts: std::mem::take(&mut self.starts),
        })
    }
}

impl News {
    /// What a member that joined at news `joined_at` is told: the news after it, if any.
    pub(crate) fn after(&self, joined_at: u64) -> Option<Bytes> {
        let first = self
            .starts
            .partition_point(|(epoch, _)| *epoch <= joined_at);
        self.starts
            .get(first)
            .map(|(_, at)| self.bytes.slice(*at..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_none_for_small_sessions_and_grows_with_large_ones() {
        assert_eq!(interval(0), Duration::ZERO);
        assert_eq!(interval(99), Duration::ZERO);
        assert_eq!(interval(100), Duration::from_millis(25));
        assert_eq!(interval(400), Duration::from_millis(100));
        assert_eq!(interval(1000), Duration::from_millis(250));
        assert_eq!(interval(3000), Duration::from_millis(750));
        assert_eq!(interval(20_000), INTERVAL_MAX);
        assert_eq!(interval(usize::MAX), INTERVAL_MAX);
    }

    #[test]
    fn a_small_session_is_told_at_once() {
        let mut p = Presence::default();
        let now = Instant::now();
        for k in 1..=3u64 {
            let (epoch, due) = p.tell(b"x", now);
            assert_eq!((epoch, due), (k, Due::Now));
            assert!(p.take(now, 10).is_some());
        }
    }

    #[test]
    fn a_large_session_batches_news_within_the_interval() {
        let mut p = Presence::default();
        let t0 = Instant::now();
        assert_eq!(p.tell(b"a", t0).1, Due::Now);
        let first = p.take(t0, 1000).unwrap();
        assert_eq!(first.after(0).as_deref(), Some(&b"a"[..]));
        let next = t0 + interval(1000);
        // Within the interval: held for one timer, then together.
        assert_eq!(p.tell(b"b", t0 + SOON), (2, Due::At(next)));
        assert_eq!(p.tell(b"c", t0 + SOON), (3, Due::Held));
        let batch = p.take(next, 1000).unwrap();
        // Each member gets what came after its own join.
        assert_eq!(batch.after(0).as_deref(), Some(&b"bc"[..]));
        assert_eq!(batch.after(1).as_deref(), Some(&b"bc"[..]));
        assert_eq!(batch.after(2).as_deref(), Some(&b"c"[..]));
        assert_eq!(batch.after(3), None);
        assert!(p.take(next, 1000).is_none());
        // After a quiet interval: at once again.
        assert_eq!(p.tell(b"d", next + interval(1000)).1, Due::Now);
    }

    const SOON: Duration = Duration::from_millis(1);
}
