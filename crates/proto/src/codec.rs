//! Framing: every stream is a sequence of length-delimited frames (big-endian `u32` length,
//! then that many bytes), each holding one postcard-encoded message.

use bytes::{Buf, BufMut, Bytes, BytesMut};
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

/// One frame holding `msg`, in a buffer of exactly its size: the encoder measures the
/// message first, so the bytes are written once and the buffer has no spare room for a
/// shared copy to pin. The relay encodes each signal this way for every route to share.
pub fn exact_frame<T: Serialize + ?Sized>(
    msg: &T,
    max_frame_bytes: usize,
) -> Result<Bytes, FrameError> {
    let len = postcard::serialize_with_flavor(msg, postcard::ser_flavors::Size::default())?;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    let mut buf = BytesMut::with_capacity(4 + len);
    encode_frame(msg, &mut buf, max_frame_bytes)?;
    debug_assert_eq!(buf.len(), 4 + len);
    Ok(buf.freeze())
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

/// Splits a stream that arrives in chunks (as QUIC hands over what it received) into
/// frames, without first copying it into a read buffer.
///
/// A frame that lies whole in one chunk is a slice of it ([`next_frame`](Deframer::next_frame))
/// or is read in place ([`next_frame_with`](Deframer::next_frame_with)); one that spans chunks
/// is gathered once into a buffer of its exact size. A slice keeps the chunk's whole
/// allocation alive (for QUIC, the datagrams received with it), so a reader that keeps what
/// it read — a client handing signals to its application — reads in place and copies out
/// what it keeps.
#[derive(Debug)]
pub struct Deframer {
    max_frame_bytes: usize,
    /// The length prefix read so far, while `body` is `None`.
    head: [u8; 4],
    head_len: usize,
    /// The frame being gathered, with its length.
    body: Option<(BytesMut, usize)>,
    /// A length over the limit was read: what follows is not frames.
    failed: bool,
}

impl Deframer {
    /// A deframer for payloads of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            head: [0; 4],
            head_len: 0,
            body: None,
            failed: false,
        }
    }

    /// Sets the largest payload accepted from the next frame on (a stream whose first frame
    /// may be larger than the rest, say).
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// Whether a frame has been started but not finished (a stream that ends now was cut).
    pub fn is_mid_frame(&self) -> bool {
        self.head_len > 0 || self.body.is_some()
    }

    /// Takes bytes from the front of `chunk` up to the end of the next frame, and returns
    /// that frame's payload once it is whole. `Ok(None)` means `chunk` is used up and the
    /// frame (if any) continues in the next one. A length over the limit is an error, and
    /// so is every later call: the bytes after it are not frames.
    pub fn next_frame(&mut self, chunk: &mut Bytes) -> Result<Option<Bytes>, FrameError> {
        Ok(self.take_frame(chunk)?.map(|(frame, _)| frame))
    }

    /// As [`next_frame`](Self::next_frame); the flag says whether the payload was gathered
    /// into a buffer of its own (true) or is a slice of `chunk` (false).
    fn take_frame(&mut self, chunk: &mut Bytes) -> Result<Option<(Bytes, bool)>, FrameError> {
        if self.failed {
            return Err(FrameError::TooLarge {
                len: 0,
                limit: self.max_frame_bytes,
            });
        }
        if self.body.is_none() {
            let len = if self.head_len == 0 && chunk.len() >= 4 {
                chunk.get_u32() as usize
            } else {
                let n = (4 - self.head_len).min(chunk.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&chunk[..n]);
                chunk.advance(n);
                self.head_len += n;
                if self.head_len < 4 {
                    return Ok(None);
                }
                self.head_len = 0;
                u32::from_be_bytes(self.head) as usize
            };
            if len > self.max_frame_bytes {
                self.failed = true;
                return Err(FrameError::TooLarge {
                    len,
                    limit: self.max_frame_bytes,
                });
            }
            if chunk.len() >= len {
                return Ok(Some((chunk.split_to(len), false)));
            }
            self.body = Some((BytesMut::with_capacity(len), len));
        }
        let Some((body, len)) = self.body.as_mut() else {
            unreachable!("a body was started above")
        };
        let n = (*len - body.len()).min(chunk.len());
        body.extend_from_slice(&chunk[..n]);
        chunk.advance(n);
        if body.len() < *len {
            return Ok(None);
        }
        let (body, _) = self.body.take().expect("checked above");
        Ok(Some((body.freeze(), true)))
    }

    /// As [`next_frame`](Self::next_frame), but hands the payload to `f` and returns what it
    /// returns. A frame that lies whole in `chunk` is read in place: no slice of the chunk is
    /// made, so its reference count is not touched (a cost per frame a reader of small
    /// frames notices). One that spans chunks is gathered first, as `next_frame` does.
    pub fn next_frame_with<R>(
        &mut self,
        chunk: &mut Bytes,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, FrameError> {
        self.next_payload(chunk, |p| f(&p))
    }

    /// As [`next_frame_with`](Self::next_frame_with), but says how the payload came: read in
    /// place ([`Payload::InPlace`]), or gathered from several chunks into a buffer that holds
    /// that payload only ([`Payload::Gathered`]). A reader that keeps parts of a gathered
    /// payload may keep slices of it — they hold nothing else alive — instead of copying them
    /// (for a frame of 8 KiB, that is a copy of 8 KiB saved per frame).
    pub fn next_payload<R>(
        &mut self,
        chunk: &mut Bytes,
        f: impl FnOnce(Payload<'_>) -> R,
    ) -> Result<Option<R>, FrameError> {
        if !self.failed && !self.is_mid_frame() && chunk.len() >= 4 {
            let len = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
            if len <= self.max_frame_bytes && chunk.len() - 4 >= len {
                let r = f(Payload::InPlace(&chunk[4..4 + len]));
                chunk.advance(4 + len);
                return Ok(Some(r));
            }
        }
        // Over the limit, cut, or spanning chunks: as `next_frame` says. (A frame whose
        // length prefix was cut but whose body lies whole in `chunk` is a slice of it.)
        Ok(self.take_frame(chunk)?.map(|(frame, gathered)| {
            if gathered {
                f(Payload::Gathered(frame))
            } else {
                f(Payload::InPlace(&frame))
            }
        }))
    }
}

/// A frame's payload as [`Deframer::next_payload`] hands it over.
#[derive(Debug)]
pub enum Payload<'a> {
    /// In the received chunk, which holds other frames too (copy out what you keep).
    InPlace(&'a [u8]),
    /// Gathered from several chunks into a buffer of its exact size, which holds nothing else.
    Gathered(Bytes),
}

impl Payload<'_> {
    /// The payload as a buffer of its own: one read in place is copied out, a gathered one
    /// is taken as it is.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Payload::InPlace(p) => Bytes::copy_from_slice(p),
            Payload::Gathered(p) => p,
        }
    }
}

impl std::ops::Deref for Payload<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::InPlace(p) => p,
            Payload::Gathered(p) => p,
        }
    }
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
    fn a_deframers_limit_can_shrink_after_a_large_first_frame() {
        let mut wire = 200u32.to_be_bytes().to_vec();
        wire.extend([7u8; 200]);
        wire.extend(200u32.to_be_bytes());
        wire.extend([8u8; 200]);
        let mut chunk = Bytes::from(wire);
        let mut d = Deframer::new(1024);
        assert_eq!(d.next_frame(&mut chunk).unwrap().unwrap().len(), 200);
        d.set_max_frame_bytes(100);
        let err = d.next_frame(&mut chunk).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 200,
                limit: 100
            }
        ));
    }

    /// How [`deframed`] reads.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Read {
        /// [`Deframer::next_frame`]: slices.
        Slices,
        /// [`Deframer::next_frame_with`], each frame copied out.
        InPlace,
        /// [`Deframer::next_payload`], each payload taken with [`Payload::into_bytes`]
        /// (a gathered one must hold nothing but itself).
        Payloads,
    }

    /// The frames a deframer yields from `wire` cut into chunks at `cuts`.
    fn deframed(wire: &[u8], cuts: &[usize], read: Read) -> Result<Vec<Bytes>, FrameError> {
        let mut d = Deframer::new(1024);
        let mut frames = Vec::new();
        let mut at = 0;
        for end in cuts.iter().copied().chain([wire.len()]) {
            let end = end.clamp(at, wire.len());
            let mut chunk = Bytes::copy_from_slice(&wire[at..end]);
            let whole = chunk.clone();
            while !chunk.is_empty() {
                let frame = match read {
                    Read::Slices => d.next_frame(&mut chunk)?,
                    Read::InPlace => d.next_frame_with(&mut chunk, Bytes::copy_from_slice)?,
                    Read::Payloads => d.next_payload(&mut chunk, |p| {
                        if let Payload::Gathered(g) = &p {
                            assert!(g.is_unique(), "a gathered payload shares its buffer");
                            assert!(
                                !whole.as_ptr_range().contains(&g.as_ptr()),
                                "a gathered payload is a slice of its chunk"
                            );
                        }
                        p.into_bytes()
                    })?,
                };
                frames.extend(frame);
            }
            // Read in place, nothing holds the chunk once it is used up.
            drop(chunk);
            let kept = !whole.is_empty() && !whole.is_unique();
            assert!(
                read == Read::Slices || !kept,
                "a frame read in place kept its chunk"
            );
            at = end;
        }
        assert!(!d.is_mid_frame(), "the wire ends between frames");
        Ok(frames)
    }

    proptest::proptest! {
        /// However the stream is cut into chunks, the deframer yields the codec's frames.
        #[test]
        fn any_cut_of_the_stream_gives_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..300), 0..8),
            mut cuts in proptest::collection::vec(0usize..2500, 0..12),
            read in proptest::sample::select(vec![Read::Slices, Read::InPlace, Read::Payloads]),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                wire.put_u32(p.len() as u32);
                wire.put_slice(p);
            }
            cuts.sort_unstable();
            let frames = deframed(&wire, &cuts, read).unwrap();
            let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            let want: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_frame_whole_in_its_chunk_is_a_slice_or_read_in_place() {
        let mut wire = BytesMut::new();
        encode_frame(&DeliveryHeader { from: None }, &mut wire, 64).unwrap();
        let mut chunk = wire.freeze();
        let start = chunk.as_ptr();
        let f = Deframer::new(64)
            .next_frame(&mut chunk.clone())
            .unwrap()
            .unwrap();
        assert_eq!(f.as_ptr(), start.wrapping_add(4));
        drop(f);
        // In place: `f` sees the chunk's own bytes, and no slice of it is left behind.
        let whole = chunk.clone();
        let seen = Deframer::new(64)
            .next_frame_with(&mut chunk, |p| (p.as_ptr(), p.len()))
            .unwrap();
        assert_eq!(seen, Some((start.wrapping_add(4), whole.len() - 4)));
        assert!(chunk.is_empty());
        drop(chunk);
        assert!(whole.is_unique(), "nothing else holds the chunk");
    }

    /// `next_payload` says how each frame came: whole in its chunk (in place, even when only
    /// its length prefix was cut off the chunk before), or gathered into a buffer that holds
    /// that frame alone.
    #[test]
    fn a_payload_says_whether_it_was_gathered() {
        let mut wire = BytesMut::new();
        for len in [10u32, 300] {
            wire.put_u32(len);
            wire.put_bytes(len as u8, len as usize);
        }
        let wire = wire.freeze();
        let kinds = |cuts: &[usize]| {
            let mut d = Deframer::new(1024);
            let mut got = Vec::new();
            let mut at = 0;
            for end in cuts.iter().copied().chain([wire.len()]) {
                let mut chunk = wire.slice(at..end);
                while !chunk.is_empty() {
                    let r = d.next_payload(&mut chunk, |p| match p {
                        Payload::InPlace(p) => ("in place", p.len(), p[0]),
                        Payload::Gathered(p) => {
                            assert!(p.is_unique(), "its buffer holds it alone");
                            assert!(!wire.as_ptr_range().contains(&p.as_ptr()));
                            ("gathered", p.len(), p[0])
                        }
                    });
                    got.extend(r.unwrap());
                }
                at = end;
            }
            got
        };
        // Whole: both in place.
        assert_eq!(kinds(&[]), [("in place", 10, 10), ("in place", 300, 44)]);
        // The second's body cut: gathered.
        assert_eq!(kinds(&[100]), [("in place", 10, 10), ("gathered", 300, 44)]);
        // The second's length prefix cut, its body whole in the next chunk: in place.
        assert_eq!(kinds(&[16]), [("in place", 10, 10), ("in place", 300, 44)]);
    }

    #[test]
    fn a_length_over_the_limit_is_refused_however_it_arrives() {
        let mut wire = BytesMut::new();
        wire.put_u32(1025);
        wire.put_slice(&[0; 1025]);
        for (cut, read) in [0, 1, 3, 4, 5]
            .into_iter()
            .flat_map(|c| [(c, Read::Slices), (c, Read::InPlace), (c, Read::Payloads)])
        {
            assert!(matches!(
                deframed(&wire, &[cut], read),
                Err(FrameError::TooLarge {
                    len: 1025,
                    limit: 1024
                })
            ));
        }
    }

    #[test]
    fn after_a_length_over_the_limit_nothing_more_is_read_as_frames() {
        let mut wire = BytesMut::new();
        wire.put_u32(2000);
        // What follows would parse as small frames if the deframer went on.
        wire.put_u32(1);
        wire.put_u8(7);
        let mut chunk = wire.freeze();
        let mut d = Deframer::new(1024);
        assert!(d.next_frame(&mut chunk).is_err());
        assert!(d.next_frame(&mut chunk).is_err());
        assert!(
            d.next_frame(&mut Bytes::from_static(&[0, 0, 0, 0]))
                .is_err()
        );
    }

    #[test]
    fn an_exact_frame_is_the_encoded_frame() {
        let sig = Incoming {
            seq: 300,
            to_all: false,
            r#type: "chat".into(),
            data: "é".repeat(500).into(),
        };
        let mut want = BytesMut::new();
        encode_frame(&sig, &mut want, 2048).unwrap();
        let got = exact_frame(&sig, 2048).unwrap();
        assert_eq!(got[..], want[..]);
        assert!(matches!(
            exact_frame(&sig, 100),
            Err(FrameError::TooLarge { limit: 100, .. })
        ));
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
