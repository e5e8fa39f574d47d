//! Signals: what may be sent, to whom, and the errors a sender gets back.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::ConnectionId;
use crate::messages::Role;

/// The longest signal type, in bytes (Vonage's rule).
pub const MAX_TYPE_BYTES: usize = 128;
/// The default limit on a signal's data, in bytes (Vonage's 8 kB).
pub const DEFAULT_MAX_DATA_BYTES: usize = 8192;
/// The highest value a relay may set for its data limit.
pub const MAX_DATA_BYTES_CEILING: usize = 65536;
/// The default number of connections a session holds (Vonage's limit).
pub const DEFAULT_MAX_CONNECTIONS_PER_SESSION: u32 = 3000;

/// Who a signal is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Everyone in the session, the sender included (as in Vonage).
    All,
    /// One connection.
    One(ConnectionId),
    /// Several connections (each at most once — a repeat is refused; order does not matter).
    List(Vec<ConnectionId>),
}

impl Target {
    /// Whether the signal goes to everyone.
    pub fn is_all(&self) -> bool {
        matches!(self, Target::All)
    }

    /// Builds a target from a list of ids: everyone when empty, one, or a list.
    pub fn from_ids(mut ids: Vec<ConnectionId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        match ids.len() {
            0 => Target::All,
            1 => Target::One(ids[0]),
            _ => Target::List(ids),
        }
    }
}

/// The limits a relay enforces; the client learns them in `Welcome` and checks them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest data, in bytes.
    pub max_data_bytes: u32,
    /// Signals per second per connection (the token bucket's rate); 0 = unlimited.
    pub signals_per_second: u32,
    /// Signals that may be sent at once beyond the rate (the bucket's size).
    pub signal_burst: u32,
    /// Connections a session holds.
    pub max_connections_per_session: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_data_bytes: DEFAULT_MAX_DATA_BYTES as u32,
            signals_per_second: 10_000,
            signal_burst: 20_000,
            max_connections_per_session: DEFAULT_MAX_CONNECTIONS_PER_SESSION,
        }
    }
}

impl Limits {
    /// The largest frame a relay with these limits accepts from a client: an `Outgoing`
    /// whose data is at the limit, with the longest type and a list of every connection.
    pub fn max_frame_bytes(&self) -> usize {
        let list = 17 * self.max_connections_per_session as usize + 8;
        self.max_data_bytes as usize + MAX_TYPE_BYTES + list + 64
    }
}

/// Why a signal was not sent. Each has Vonage's numeric code (`code()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SignalError {
    /// The type has a character outside `A-Z a-z 0-9 - _ ~`. (400)
    #[error("type may only contain A-Z a-z 0-9 - _ ~ (found {found:?} at byte {position})")]
    InvalidType {
        /// The first character that is not allowed.
        found: char,
        /// Its byte offset in the type.
        position: u32,
    },
    /// A list target names no connection. (400)
    #[error("the target list is empty; send to everyone or name at least one connection")]
    EmptyTargetList,
    /// The target list is longer than the session can be. (400)
    #[error("the target list has {count} connections; the limit is {limit}")]
    TooManyTargets {
        /// Entries in the list.
        count: u32,
        /// The session's size limit.
        limit: u32,
    },
    /// The sender's role may not send signals. (403)
    #[error("a {role} may not send signals")]
    Forbidden {
        /// The sender's role.
        role: Role,
    },
    /// A target is not in the session. (404)
    #[error("connection {connection} is not in this session")]
    TargetNotFound {
        /// The first missing target.
        connection: ConnectionId,
    },
    /// The type is longer than 128 bytes. (413)
    #[error("type is {len} bytes; the limit is {limit}")]
    TypeTooLong {
        /// Its length in bytes.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// The data is longer than the relay's limit. (413)
    #[error("data is {len} bytes; the limit is {limit}")]
    DataTooLong {
        /// Its length in bytes.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// The sender sent faster than its rate limit. (429)
    #[error("rate limit: at most {per_second} signals per second (burst {burst})")]
    RateLimited {
        /// The sustained rate.
        per_second: u32,
        /// The burst allowance.
        burst: u32,
    },
    /// A list target names the same connection twice. (400)
    #[error("the target list names connection {connection} twice")]
    DuplicateTarget {
        /// The first connection listed again.
        connection: ConnectionId,
    },
    /// The sender sent more bytes × receivers than its byte allowance. (429)
    #[error("rate limit: at most {bytes_per_second} bytes per second, counted once per receiver")]
    FanoutRateLimited {
        /// The sustained allowance (a signal's frame bytes times the receivers it reaches).
        bytes_per_second: u32,
    },
}

impl SignalError {
    /// The numeric code, as Vonage's REST API gives it.
    pub fn code(&self) -> u16 {
        match self {
            SignalError::InvalidType { .. }
            | SignalError::EmptyTargetList
            | SignalError::TooManyTargets { .. }
            | SignalError::DuplicateTarget { .. } => 400,
            SignalError::Forbidden { .. } => 403,
            SignalError::TargetNotFound { .. } => 404,
            SignalError::TypeTooLong { .. } | SignalError::DataTooLong { .. } => 413,
            SignalError::RateLimited { .. } | SignalError::FanoutRateLimited { .. } => 429,
        }
    }
}

/// Checks a signal type: at most 128 bytes of `A-Z a-z 0-9 - _ ~` (empty is allowed).
pub fn validate_type(ty: &str) -> Result<(), SignalError> {
    if ty.len() > MAX_TYPE_BYTES {
        return Err(SignalError::TypeTooLong {
            len: ty.len() as u32,
            limit: MAX_TYPE_BYTES as u32,
        });
    }
    match ty
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '~')))
    {
        Some((position, found)) => Err(SignalError::InvalidType {
            found,
            position: position as u32,
        }),
        None => Ok(()),
    }
}

/// Checks a signal's data against the data limit.
pub fn validate_data(data: &str, limits: &Limits) -> Result<(), SignalError> {
    if data.len() > limits.max_data_bytes as usize {
        return Err(SignalError::DataTooLong {
            len: data.len() as u32,
            limit: limits.max_data_bytes,
        });
    }
    Ok(())
}

/// Checks the shape of a target (not whether its connections are present).
pub fn validate_target(target: &Target, limits: &Limits) -> Result<(), SignalError> {
    if let Target::List(ids) = target {
        if ids.is_empty() {
            return Err(SignalError::EmptyTargetList);
        }
        if ids.len() > limits.max_connections_per_session as usize {
            return Err(SignalError::TooManyTargets {
                count: ids.len() as u32,
                limit: limits.max_connections_per_session,
            });
        }
        // A list names each connection once: a repeat is a mistake (or an attempt to make
        // the relay deliver one signal many times), refused rather than merged.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(&connection) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(SignalError::DuplicateTarget { connection });
        }
    }
    Ok(())
}

/// Every check that can be made without knowing the session: type, data, target shape.
/// Both the client (before sending) and the relay (on receipt) run it.
pub fn validate_signal(
    ty: &str,
    data: &str,
    target: &Target,
    limits: &Limits,
) -> Result<(), SignalError> {
    validate_type(ty)?;
    validate_data(data, limits)?;
    validate_target(target, limits)
}

/// Whether a role may send signals.
pub fn role_may_send(role: Role) -> Result<(), SignalError> {
    match role {
        Role::Subscriber => Err(SignalError::Forbidden { role }),
        Role::Moderator | Role::Publisher | Role::Server => Ok(()),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("everyone"),
            Target::One(id) => write!(f, "{}", id.short()),
            Target::List(ids) => {
                let shorts: Vec<String> = ids.iter().map(ConnectionId::short).collect();
                write!(f, "[{}]", shorts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_rules_at_and_past_the_bound() {
        assert_eq!(validate_type(""), Ok(()));
        assert_eq!(validate_type("chat"), Ok(()));
        assert_eq!(validate_type("a-Z_0~9"), Ok(()));
        assert_eq!(validate_type(&"t".repeat(128)), Ok(()));
        assert_eq!(
            validate_type(&"t".repeat(129)),
            Err(SignalError::TypeTooLong {
                len: 129,
                limit: 128
            })
        );
        let e = validate_type("no spaces").unwrap_err();
        assert_eq!(
            e,
            SignalError::InvalidType {
                found: ' ',
                position: 2
            }
        );
        assert_eq!(e.code(), 400);
        assert!(
            e.to_string()
                .starts_with("type may only contain A-Z a-z 0-9 - _ ~")
        );
        assert!(validate_type("ü").is_err());
        assert!(validate_type("a.b").is_err());
    }

    #[test]
    fn data_rules_at_and_past_the_bound() {
        let limits = Limits::default();
        assert_eq!(validate_data("", &limits), Ok(()));
        assert_eq!(validate_data(&"d".repeat(8192), &limits), Ok(()));
        let e = validate_data(&"d".repeat(9000), &limits).unwrap_err();
        assert_eq!(e.code(), 413);
        assert_eq!(e.to_string(), "data is 9000 bytes; the limit is 8192");
        // Multi-byte UTF-8 counts in bytes.
        assert!(validate_data(&"é".repeat(4097), &limits).is_err());
        let raised = Limits {
            max_data_bytes: 65536,
            ..limits
        };
        assert_eq!(validate_data(&"d".repeat(65536), &raised), Ok(()));
    }

    #[test]
    fn target_rules() {
        let limits = Limits {
            max_connections_per_session: 2,
            ..Limits::default()
        };
        assert_eq!(validate_target(&Target::All, &limits), Ok(()));
        assert_eq!(
            validate_target(&Target::List(vec![]), &limits),
            Err(SignalError::EmptyTargetList)
        );
        let ids: Vec<_> = (0..3).map(|_| ConnectionId::random()).collect();
        assert_eq!(
            validate_target(&Target::List(ids[..2].to_vec()), &limits),
            Ok(())
        );
        assert_eq!(
            validate_target(&Target::List(ids.clone()), &limits),
            Err(SignalError::TooManyTargets { count: 3, limit: 2 })
        );
        assert_eq!(
            validate_target(
                &Target::List(vec![ids[1], ids[0], ids[1]]),
                &Limits::default()
            ),
            Err(SignalError::DuplicateTarget { connection: ids[1] })
        );
        assert_eq!(Target::from_ids(vec![]), Target::All);
        assert_eq!(Target::from_ids(vec![ids[0], ids[0]]), Target::One(ids[0]));
    }

    #[test]
    fn ping_is_valid() {
        assert_eq!(
            validate_signal("", "", &Target::All, &Limits::default()),
            Ok(())
        );
    }

    #[test]
    fn codes() {
        let id = ConnectionId::random();
        assert_eq!(
            SignalError::Forbidden {
                role: Role::Subscriber
            }
            .code(),
            403
        );
        assert_eq!(SignalError::TargetNotFound { connection: id }.code(), 404);
        assert_eq!(
            SignalError::RateLimited {
                per_second: 1,
                burst: 1
            }
            .code(),
            429
        );
        assert_eq!(role_may_send(Role::Subscriber).unwrap_err().code(), 403);
        assert!(role_may_send(Role::Publisher).is_ok());
    }

    #[test]
    fn frame_bound_covers_the_largest_outgoing() {
        let limits = Limits {
            max_connections_per_session: 3000,
            max_data_bytes: 65536,
            ..Limits::default()
        };
        let ids: Vec<_> = (0..3000).map(|_| ConnectionId::random()).collect();
        let msg = crate::messages::Outgoing {
            seq: u64::MAX,
            to: Target::List(ids),
            r#type: "t".repeat(128).into(),
            data: "d".repeat(65536).into(),
        };
        let bytes = postcard::to_allocvec(&msg).unwrap();
        assert!(bytes.len() <= limits.max_frame_bytes(), "{}", bytes.len());
    }
}
