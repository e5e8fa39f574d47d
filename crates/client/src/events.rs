//! What the client tells its user: signals, presence, rejections, and the connection's end.

use bytestring::ByteString;
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, SignalError, Target};
use std::collections::VecDeque;

use tokio::sync::mpsc;

/// A signal to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// Who it is for.
    pub to: Target,
    /// The type (may be empty).
    pub r#type: String,
    /// The data (may be empty).
    pub data: String,
}

impl Signal {
    /// A signal to everyone in the session (the sender included).
    pub fn to_all(ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::All,
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A signal to one connection.
    pub fn to_one(id: ConnectionId, ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::One(id),
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A signal to several connections.
    pub fn to_list(ids: Vec<ConnectionId>, ty: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            to: Target::List(ids),
            r#type: ty.into(),
            data: data.into(),
        }
    }

    /// A ping: no type, no data, to everyone; it identifies only the sender.
    pub fn ping() -> Self {
        Self::to_all("", "")
    }
}

/// A signal as received.
///
/// Its type and data are text shared with the buffer the client read them into (no copy
/// per signal): cheap to clone and to drop. An application that keeps many signals for long
/// should keep copies (`data.to_string()`), so as not to keep whole receive buffers alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSignal {
    /// The sender, stamped by the relay; `None` when the relay itself sent it (REST).
    pub from: Option<ConnectionId>,
    /// The sender's sequence number.
    pub seq: u64,
    /// Whether it went to everyone.
    pub to_all: bool,
    /// The type.
    pub r#type: ByteString,
    /// The data.
    pub data: ByteString,
}

impl ReceivedSignal {
    /// Whether it is a ping (no type, no data).
    pub fn is_ping(&self) -> bool {
        self.r#type.is_empty() && self.data.is_empty()
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived.
    Signal(ReceivedSignal),
    /// Someone joined the session.
    Joined(ConnectionInfo),
    /// Someone left the session.
    Left {
        /// Who (as they were known).
        peer: ConnectionInfo,
        /// Why.
        reason: LeftReason,
    },
    /// A signal sent without awaiting its receipt was rejected by the relay.
    Rejected {
        /// Its `seq`.
        seq: u64,
        /// Why.
        error: SignalError,
    },
    /// A control request was refused (e.g. a kick by a non-moderator).
    Denied {
        /// The relay's explanation.
        message: String,
    },
    /// Signals of one sender addressed to us were lost while we were away (the relay could
    /// not keep them all): "12 signals from alice were lost".
    Missed {
        /// Whose: a connection, or `None` for the relay's own signals.
        from: Option<ConnectionId>,
        /// The lowest lost `seq`.
        first: u64,
        /// The highest lost `seq`.
        last: u64,
        /// How many.
        count: u64,
    },
    /// The connection to the relay was lost; the client is reconnecting (Vonage's
    /// `sessionReconnecting`). Sent signals wait, unless `retry_after_reconnect` is off.
    Reconnecting {
        /// Why the connection was lost.
        reason: LeftReason,
        /// The explanation.
        message: String,
    },
    /// Back (Vonage's `sessionReconnected`). `resumed`: the same connection — nothing was
    /// missed and peers saw no change. Otherwise the relay no longer held it (it restarted,
    /// or the grace period passed) and this is a new connection, `me`, in the same session;
    /// presence events before this one bring the participant list up to date.
    Reconnected {
        /// Whether this is the same connection as before.
        resumed: bool,
        /// This connection now.
        me: ConnectionInfo,
    },
    /// The connection ended; no more events follow.
    Disconnected {
        /// Why.
        reason: LeftReason,
        /// The relay's or the network's explanation.
        message: String,
    },
}

/// Events travel in batches: a delivery stream hands over everything it has already read
/// in one channel operation, which matters at hundreds of thousands of signals a second.
pub(crate) type EventTx = mpsc::Sender<Vec<Event>>;

/// The stream of events of one client. When it is not read, the relay eventually drops the
/// client as a slow consumer: read it.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Vec<Event>>,
    ready: VecDeque<Event>,
    /// Keeps the client in its session while the events are read (see [`crate::Client`]).
    _owner: std::sync::Arc<crate::client::Owner>,
}

impl Events {
    pub(crate) fn new(
        rx: mpsc::Receiver<Vec<Event>>,
        owner: std::sync::Arc<crate::client::Owner>,
    ) -> Self {
        Self {
            rx,
            ready: VecDeque::new(),
            _owner: owner,
        }
    }

    /// The next event; `None` after `Disconnected`.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            self.ready.extend(self.rx.recv().await?);
        }
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            self.ready.extend(self.rx.try_recv().ok()?);
        }
    }
}
