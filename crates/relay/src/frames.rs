//! Encoding the relay's outgoing frames.

use bytes::Bytes;
use serde::Serialize;
use signalbox_proto::codec::{self, MAX_CONTROL_FRAME};

/// One encoded control-stream frame; `None` (logged) if the message cannot be encoded,
/// which only a bug can cause.
pub(crate) fn control<T: Serialize>(msg: &T) -> Option<Bytes> {
    match codec::frame(msg, MAX_CONTROL_FRAME) {
        Ok(b) => Some(b.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a control frame");
            None
        }
    }
}
