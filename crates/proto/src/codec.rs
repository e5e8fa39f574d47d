//! Framing: every stream is a sequence of length-delimited frames (big-endian `u32` length,
//! then that many bytes), each holding one postcard-encoded message.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The largest control-stream frame either side sends or accepts: a `Welcome` listing a
/// full session, each member with the most connection data, fits with room to spare.
pub const MAX_CONTROL_FRAME: usize = 16 << 20;

/// A frame or message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The payload is not a valid postcard encoding of the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The payload decoded but bytes were left over.
    #[error("malformed message: {0} bytes left over after the message")]
    TrailingBytes(usize),
    /// The encoded message is larger than the frame limit.
    #[error("frame is {len} bytes; the limit is {limit}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// The codec for reading frames with payloads of at most `max_frame_bytes`.
///
/// `FramedRead::new(stream, codec(limit))` yields one payload per frame and fails with
/// an error (ending the stream) on a frame over the limit.
pub fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Appends one frame holding `msg` to `buf`. Encoding straight into the output buffer lets
/// the relay encode a signal once and share those bytes with every receiver.
pub fn encode_frame<T: Serialize + ?Sized>(
    msg: &T,
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.put_u32(0);
    let buf = postcard::serialize_with_flavor(msg, Appender(buf))?;
    let len = buf.len() - start - 4;
    if len > max_frame_bytes {
        buf.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// One frame holding `msg`, as a fresh buffer.
pub fn frame<T: Serialize + ?Sized>(
    msg: &T,
    max_frame_bytes: usize,
) -> Result<BytesMut, FrameError> {
    let mut buf = BytesMut::with_capacity(64);
    encode_frame(msg, &mut buf, max_frame_bytes)?;
    Ok(buf)
}

/// Decodes one message from a frame's payload (the bytes after the length), refusing
/// trailing bytes. Strings borrow from `payload`.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Appends postcard's output to a `BytesMut`, whole slices at a time.
struct Appender<'a>(&'a mut BytesMut);

impl<'a> postcard::ser_flavors::Flavor for Appender<'a> {
    type Output = &'a mut BytesMut;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Self::Output> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{DeliveryHeader, Incoming};
    use bytes::Buf;
    use tokio_util::codec::Decoder;

    #[test]
    fn frames_round_trip_through_the_codec() {
        let mut wire = BytesMut::new();
        encode_frame(&DeliveryHeader { from: None }, &mut wire, 1024).unwrap();
        let sig = Incoming {
            seq: 7,
            to_all: true,
            r#type: "chat".into(),
            data: "hi".into(),
        };
        encode_frame(&sig, &mut wire, 1024).unwrap();
        let mut codec = codec(1024);
        let first = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(decode::<DeliveryHeader>(&first).unwrap().from, None);
        let second = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(decode::<Incoming<'_>>(&second).unwrap(), sig);
        assert!(codec.decode(&mut wire).unwrap().is_none());
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        let big = Incoming {
            seq: 1,
            to_all: true,
            r#type: "".into(),
            data: "x".repeat(100).into(),
        };
        let mut buf = BytesMut::new();
        let err = encode_frame(&big, &mut buf, 50).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { limit: 50, .. }));
        assert!(buf.is_empty(), "a failed encode leaves nothing behind");

        encode_frame(&big, &mut buf, 1000).unwrap();
        assert!(codec(50).decode(&mut buf).is_err());
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(decode::<Incoming<'_>>(&[0xff, 0xff, 0xff]).is_err());
        let mut buf = BytesMut::new();
        encode_frame(&DeliveryHeader { from: None }, &mut buf, 64).unwrap();
        buf.advance(4);
        buf.put_u8(9);
        assert!(matches!(
            decode::<DeliveryHeader>(&buf),
            Err(FrameError::TrailingBytes(1))
        ));
    }
}
