//! Whether a signal may go: the sender's role, its rate buckets, the signal rules and the
//! targets, in that order, for a client's signal and (without role or buckets) the relay's own.

use std::time::Instant;

use signalbox_proto::{ConnectionId, Limits, Outgoing, Role, SignalError, Target, signal};

use super::ratelimit::Allowance;

/// A delivery frame's bytes beyond its type and data, about (length, seq, flags, lengths):
/// what the bytes × receivers bucket is charged per receiver, with the type and data.
pub(crate) const FRAME_OVERHEAD: usize = 32;

/// The relay's rules for signals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub(crate) limits: &'a Limits,
    /// The bytes × receivers a sender may spend per second (told in the rejection).
    pub(crate) fanout_bytes_per_second: u32,
}

/// The first target of `to` that is not in the session (`present` knows who is, here or on
/// another node).
pub(crate) fn missing_target(
    to: &Target,
    present: impl Fn(&ConnectionId) -> bool,
) -> Option<ConnectionId> {
    match to {
        Target::All => None,
        Target::One(id) => (!present(id)).then_some(*id),
        Target::List(ids) => ids.iter().find(|id| !present(id)).copied(),
    }
}

/// Checks a client's signal at `now`: its `role` may send, its signal bucket has a token, the
/// signal keeps the rules, every target is `present`, and its bytes bucket covers the signal's
/// bytes × the receivers it reaches (`broadcast`: how many a signal to everyone reaches here).
/// A signal refused by a rule or a target spends no bytes.
pub(crate) fn admit(
    out: &Outgoing<'_>,
    role: Role,
    allowance: &mut Allowance,
    rules: Rules<'_>,
    now: Instant,
    present: impl Fn(&ConnectionId) -> bool,
    broadcast: usize,
) -> Result<(), SignalError> {
    signal::role_may_send(role)?;
    let signals = &mut allowance.signals;
    if !signals.is_unlimited() && !signals.try_take(now) {
        return Err(SignalError::RateLimited {
            per_second: rules.limits.signals_per_second,
            burst: rules.limits.signal_burst,
        });
    }
    signal::validate_signal(&out.r#type, &out.data, &out.to, rules.limits)?;
    if let Some(connection) = missing_target(&out.to, present) {
        return Err(SignalError::TargetNotFound { connection });
    }
    let bytes = &mut allowance.bytes;
    if !bytes.is_unlimited() {
        let receivers = match &out.to {
            Target::All => broadcast,
            Target::One(_) => 1,
            Target::List(ids) => ids.len(),
        };
        let frame = out.r#type.len() + out.data.len() + FRAME_OVERHEAD;
        if !bytes.try_take_n(now, (frame * receivers) as f64) {
            return Err(SignalError::FanoutRateLimited {
                bytes_per_second: rules.fanout_bytes_per_second,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ratelimit::TokenBucket;
    use std::time::Duration;

    fn allowance(signals: u32, bytes: u32, now: Instant) -> Allowance {
        Allowance {
            signals: TokenBucket::new(signals, signals, now),
            bytes: TokenBucket::new(bytes, bytes, now),
        }
    }

    fn out(to: Target, data: &str) -> Outgoing<'static> {
        Outgoing {
            seq: 1,
            to,
            r#type: "chat".into(),
            data: data.to_owned().into(),
        }
    }

    #[test]
    fn each_rule_refuses_in_its_turn() {
        let limits = Limits::default();
        let rules = Rules {
            limits: &limits,
            fanout_bytes_per_second: 1000,
        };
        let now = Instant::now();
        let (a, b) = (ConnectionId::random(), ConnectionId::random());
        let here = |id: &ConnectionId| *id == a;
        let mut allow = allowance(100, 1000, now);
        // A subscriber may not send.
        assert!(matches!(
            admit(
                &out(Target::All, "hi"),
                Role::Subscriber,
                &mut allow,
                rules,
                now,
                here,
                1
            ),
            Err(SignalError::Forbidden { .. })
        ));
        let p = Role::Publisher;
        // A target that is not here.
        assert_eq!(
            admit(
                &out(Target::List(vec![a, b]), "hi"),
                p,
                &mut allow,
                rules,
                now,
                here,
                1
            ),
            Err(SignalError::TargetNotFound { connection: b })
        );
        // Bytes × receivers: 100 bytes to 4 receivers is 4 × (100 + 4 + 32) = 544 of 1000.
        let big = "x".repeat(100);
        assert_eq!(
            admit(&out(Target::All, &big), p, &mut allow, rules, now, here, 4),
            Ok(())
        );
        assert_eq!(
            admit(&out(Target::All, &big), p, &mut allow, rules, now, here, 4),
            Err(SignalError::FanoutRateLimited {
                bytes_per_second: 1000
            })
        );
        // The same signal to one receiver fits what is left.
        assert_eq!(
            admit(
                &out(Target::One(a), &big),
                p,
                &mut allow,
                rules,
                now,
                here,
                4
            ),
            Ok(())
        );
        // Half a second later the bucket has refilled by half.
        let later = now + Duration::from_millis(500);
        assert_eq!(
            admit(
                &out(Target::All, &big),
                p,
                &mut allow,
                rules,
                later,
                here,
                3
            ),
            Ok(())
        );
    }

    #[test]
    fn the_signal_bucket_limits_the_rate_and_refills() {
        let limits = Limits {
            signals_per_second: 10,
            signal_burst: 2,
            ..Limits::default()
        };
        let rules = Rules {
            limits: &limits,
            fanout_bytes_per_second: 0,
        };
        let now = Instant::now();
        let mut allow = allowance(10, 0, now);
        allow.signals = TokenBucket::new(10, 2, now);
        let p = Role::Publisher;
        let ok = |allow: &mut Allowance, at| {
            admit(&out(Target::All, "x"), p, allow, rules, at, |_| true, 1)
        };
        assert_eq!(ok(&mut allow, now), Ok(()));
        assert_eq!(ok(&mut allow, now), Ok(()));
        assert_eq!(
            ok(&mut allow, now),
            Err(SignalError::RateLimited {
                per_second: 10,
                burst: 2
            })
        );
        assert_eq!(ok(&mut allow, now + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn missing_target_names_the_first_absent_one() {
        let (a, b, c) = (
            ConnectionId::random(),
            ConnectionId::random(),
            ConnectionId::random(),
        );
        let here = |id: &ConnectionId| *id != b && *id != c;
        assert_eq!(missing_target(&Target::All, here), None);
        assert_eq!(missing_target(&Target::One(a), here), None);
        assert_eq!(missing_target(&Target::One(c), here), Some(c));
        assert_eq!(missing_target(&Target::List(vec![a, c, b]), here), Some(c));
    }
}
