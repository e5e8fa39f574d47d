//! Encoding the relay's outgoing frames.

use bytes::Bytes;
use serde::Serialize;
use signalbox_proto::codec::{self, MAX_CONTROL_FRAME};

/// One encoded signal frame, written once into a buffer of exactly its size: every route
/// shares it, and a frame queued or kept for replay pins its own bytes and no more (a slice
/// of an encoder's buffer, which grows in steps, would keep that whole buffer alive).
pub(crate) fn signal(incoming: &signalbox_proto::Incoming<'_>) -> Result<Bytes, codec::FrameError> {
    codec::exact_frame(incoming, usize::MAX)
}

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
