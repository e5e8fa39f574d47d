//! A receiver across a lost connection: what its client said it has, and what it missed.
//!
//! When a client resumes it tells, per sender, the last seq it has; the routes toward it replay
//! what they kept after that ([`super::replay`]). What could not be kept while it was away is
//! counted here per sender — the lowest and highest seq and how many — and told to the client
//! as `Missed` once it is back, so a gap is never silent.

use std::collections::HashMap;

use signalbox_proto::ConnectionId;

/// A sender: a member, or (`None`) the relay itself.
pub(crate) type From = Option<ConnectionId>;

/// Signals of one sender lost to an away member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The lowest lost seq.
    pub(crate) first: u64,
    /// The highest lost seq.
    pub(crate) last: u64,
    /// How many.
    pub(crate) count: u64,
}

/// One receiver's resume state.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// What the client said it has from each sender when it last resumed.
    seen: HashMap<From, u64>,
    /// Lost while it was away, by sender (one entry per sender: bounded by the session).
    missed: HashMap<From, Lost>,
}

impl Resume {
    /// The client resumed, saying it has `seen` from each sender.
    pub(crate) fn resumed(&mut self, seen: HashMap<From, u64>) {
        self.seen = seen;
    }

    /// What the client has from `from`, as it said when it resumed (0: nothing).
    pub(crate) fn seen_from(&self, from: From) -> u64 {
        self.seen.get(&from).copied().unwrap_or(0)
    }

    /// Counts `count` signals of `from`, seqs `first..=last`, as lost.
    pub(crate) fn missed(&mut self, from: From, first: u64, last: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.missed
            .entry(from)
            .and_modify(|l| {
                l.first = l.first.min(first);
                l.last = l.last.max(last);
                l.count += count;
            })
            .or_insert(Lost { first, last, count });
    }

    /// What was lost, by sender, oldest first; forgotten once taken.
    pub(crate) fn take_missed(&mut self) -> Vec<(From, Lost)> {
        let mut lost: Vec<_> = self.missed.drain().collect();
        lost.sort_by_key(|(_, l)| l.first);
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_of_one_sender_merge_and_are_told_once_oldest_first() {
        let (a, b) = (Some(ConnectionId::random()), Some(ConnectionId::random()));
        let mut r = Resume::default();
        r.missed(a, 10, 12, 3);
        r.missed(b, 4, 4, 1);
        r.missed(a, 20, 25, 6);
        r.missed(None, 7, 8, 0); // nothing lost: nothing told
        assert_eq!(
            r.take_missed(),
            vec![
                (
                    b,
                    Lost {
                        first: 4,
                        last: 4,
                        count: 1
                    }
                ),
                (
                    a,
                    Lost {
                        first: 10,
                        last: 25,
                        count: 9
                    }
                ),
            ]
        );
        assert!(r.take_missed().is_empty());
    }

    #[test]
    fn what_the_client_has_is_what_it_said_last() {
        let a = Some(ConnectionId::random());
        let mut r = Resume::default();
        assert_eq!(r.seen_from(a), 0);
        r.resumed(HashMap::from([(a, 41), (None, 3)]));
        assert_eq!((r.seen_from(a), r.seen_from(None)), (41, 3));
        r.resumed(HashMap::from([(a, 50)]));
        assert_eq!((r.seen_from(a), r.seen_from(None)), (50, 0));
    }
}
