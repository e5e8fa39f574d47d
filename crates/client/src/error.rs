//! The client's errors: joining, and sending.

use signalbox_proto::invite::InvalidInvite;
use signalbox_proto::{Fingerprint, RefuseCode, SignalError};

use crate::tls::TlsSetupError;

/// Vonage's code for "not connected".
pub const NOT_CONNECTED: u16 = 1010;

/// Why `connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The invite string does not parse.
    #[error(transparent)]
    Invite(#[from] InvalidInvite),
    /// The relay's host name did not resolve.
    #[error("cannot resolve {host}: {message}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        message: String,
    },
    /// The relay presented another certificate than the pinned one.
    #[error(
        "the relay at {address} presented certificate fingerprint {actual}, but the invite pins {expected}; refusing to connect (the relay's identity changed, or this is not the relay you were invited to)"
    )]
    FingerprintMismatch {
        /// The relay's address.
        address: String,
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// What the relay presented.
        actual: Fingerprint,
    },
    /// The token was made for another relay than the one that answered; it was not sent.
    #[error(
        "the token is for the relay with certificate fingerprint {audience}, but the relay at {address} presented {actual}; the token was not sent (this is not the relay that made it)"
    )]
    WrongRelay {
        /// The relay's address.
        address: String,
        /// The token's audience.
        audience: Fingerprint,
        /// What the relay presented.
        actual: Fingerprint,
    },
    /// The TLS settings could not be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The local UDP socket could not be made.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The relay did not answer, or the QUIC handshake failed.
    #[error("cannot reach the relay at {address}: {message}")]
    Unreachable {
        /// The relay's address.
        address: String,
        /// Why.
        message: String,
    },
    /// Nothing happened for too long.
    #[error("no answer from the relay at {address} within {seconds} s")]
    Timeout {
        /// The relay's address.
        address: String,
        /// The time waited.
        seconds: u64,
    },
    /// The relay refused the join.
    #[error("the relay refused to join: {message} (code {})", .code.code())]
    Refused {
        /// What kind of refusal.
        code: RefuseCode,
        /// The relay's explanation.
        message: String,
    },
    /// The relay spoke something other than the Signalbox protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why a signal was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The signal breaks a rule; it was not sent (checked before sending).
    #[error("{0}")]
    Invalid(SignalError),
    /// The relay rejected the signal.
    #[error("{0}")]
    Rejected(SignalError),
    /// The client is not connected (code 1010).
    #[error("not connected to the relay")]
    NotConnected,
    /// The client is reconnecting and its queue of unsent signals is full.
    #[error("not connected, and {0} signals already wait to be sent; the limit is {0}")]
    QueueFull(usize),
}

impl SendError {
    /// The numeric code (Vonage's codes; 1010 for "not connected").
    pub fn code(&self) -> u16 {
        match self {
            SendError::Invalid(e) | SendError::Rejected(e) => e.code(),
            SendError::NotConnected | SendError::QueueFull(_) => NOT_CONNECTED,
        }
    }

    /// The signal error, when the signal itself was at fault.
    pub fn signal_error(&self) -> Option<&SignalError> {
        match self {
            SendError::Invalid(e) | SendError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

/// A control request (e.g. a kick) could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The client is not connected.
    #[error("not connected to the relay")]
    NotConnected,
    /// Only moderators may do this.
    #[error("only moderators may remove connections")]
    NotModerator,
}
