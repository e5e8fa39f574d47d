//! A sender's signal numbers: which signal is new, which is a resend, and what to say again.
//!
//! The rule (`crates/proto/README.md`, "seq"): a client numbers its signals 1, 2, 3, … and
//! never reuses a number. After a reconnect it resends every signal the relay had not
//! acknowledged, so the relay sees some numbers twice; it takes each number once. A resent
//! signal that was *rejected* is told again (the notice may have been lost with the
//! connection), and so is every remembered rejection when the client resumes. The numbers live
//! with the member, not the connection, so a resume keeps them.

use std::collections::VecDeque;

use signalbox_proto::SignalError;

/// How many recent rejections a sender's [`Sequencer`] remembers.
const REMEMBERED: usize = 64;

/// One sender's numbering.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The highest seq taken.
    last: u64,
    /// Its most recent rejections, told again if the signal is resent.
    rejections: VecDeque<(u64, SignalError)>,
}

/// What to do with a signal, by its seq.
#[derive(Debug, PartialEq)]
pub(crate) enum Seq {
    /// New: take it.
    New,
    /// Taken before (a resend after a reconnect): drop it, telling `Some` rejection again.
    Resent(Option<SignalError>),
    /// 0: seqs start at 1. A protocol error.
    Zero,
}

impl Sequencer {
    /// Sorts signal `seq`; a new one counts as taken from now on.
    pub(crate) fn check(&mut self, seq: u64) -> Seq {
        if seq == 0 {
            return Seq::Zero;
        }
        if seq <= self.last {
            let told = self
                .rejections
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, e)| e.clone());
            return Seq::Resent(told);
        }
        self.last = seq;
        Seq::New
    }

    /// Remembers that the signal `seq` (taken) was rejected with `error`.
    pub(crate) fn rejected(&mut self, seq: u64, error: SignalError) {
        if self.rejections.len() == REMEMBERED {
            self.rejections.pop_front();
        }
        self.rejections.push_back((seq, error));
    }

    /// The highest seq taken (told to a client that resumes: everything up to it was taken).
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// The rejections it remembers, oldest first: told again to a client that resumes, before
    /// the `Accepted` that covers them (their first telling may have been lost with the
    /// connection).
    pub(crate) fn rejections(&self) -> impl Iterator<Item = &(u64, SignalError)> {
        self.rejections.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_seq_is_taken_once_and_a_resent_rejection_is_told_again() {
        let mut s = Sequencer::default();
        assert_eq!(s.check(0), Seq::Zero);
        assert_eq!(s.check(1), Seq::New);
        assert_eq!(s.check(2), Seq::New);
        s.rejected(
            2,
            SignalError::RateLimited {
                per_second: 1,
                burst: 1,
            },
        );
        assert_eq!(s.check(1), Seq::Resent(None));
        assert!(matches!(
            s.check(2),
            Seq::Resent(Some(SignalError::RateLimited { .. }))
        ));
        // A gap is the client's business (it never reuses a number): 7 is new.
        assert_eq!(s.check(7), Seq::New);
        assert_eq!(s.check(5), Seq::Resent(None));
        assert_eq!(s.last(), 7);
    }

    #[test]
    fn only_the_most_recent_rejections_are_remembered() {
        let mut s = Sequencer::default();
        for seq in 1..=(REMEMBERED as u64 + 10) {
            assert_eq!(s.check(seq), Seq::New);
            s.rejected(seq, SignalError::EmptyTargetList);
        }
        assert_eq!(s.check(1), Seq::Resent(None));
        assert_eq!(
            s.check(REMEMBERED as u64 + 10),
            Seq::Resent(Some(SignalError::EmptyTargetList))
        );
    }

    proptest! {
        /// A client sends 1..=n and reconnects after some of them, resending the last `back`
        /// signals (those the relay had not acknowledged yet): every seq is taken exactly
        /// once, in order, and every resend is dropped.
        #[test]
        fn resends_after_reconnects_are_taken_once_in_order(
            n in 1u64..200,
            reconnects in proptest::collection::vec((1u64..200, 0u64..50), 0..8),
        ) {
            let mut s = Sequencer::default();
            let mut taken = Vec::new();
            for seq in 1..=n {
                if s.check(seq) == Seq::New {
                    taken.push(seq);
                }
                for &(at, back) in &reconnects {
                    if at == seq {
                        for resent in seq.saturating_sub(back).max(1)..=seq {
                            prop_assert_eq!(s.check(resent), Seq::Resent(None));
                        }
                    }
                }
            }
            prop_assert_eq!(taken, (1..=n).collect::<Vec<_>>());
            prop_assert_eq!(s.last(), n);
        }
    }
}
