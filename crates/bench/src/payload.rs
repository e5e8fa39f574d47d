//! What every benchmark message carries: sender, sequence number and intended send time, in
//! ASCII (Signalbox data is UTF-8 text), padded to the message size.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the stamp at the start of each payload.
pub(crate) const STAMP: usize = 40;

/// What one message is stamped with, and its size: each backend makes the payload in the
/// type its client takes, so none pays for a conversion a real user of it would not make.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) sender: u32,
    pub(crate) seq: u64,
    pub(crate) t_ns: u64,
    /// The payload's size in bytes (at least [`STAMP`]).
    pub(crate) size: usize,
}

impl Stamp {
    /// The stamp's digits, in the order [`read`] takes them.
    fn digits(&self) -> [u8; STAMP] {
        let mut d = [0u8; STAMP];
        hex(&mut d[..8], u64::from(self.sender));
        hex(&mut d[8..24], self.seq);
        hex(&mut d[24..], self.t_ns);
        d
    }

    /// The payload as bytes, cut from `buf` (NATS and the forwarder take `Bytes`).
    pub(crate) fn bytes(&self, buf: &mut BytesMut) -> Bytes {
        buf.reserve(self.size.max(STAMP));
        buf.put_slice(&self.digits());
        if self.size > STAMP {
            buf.put_bytes(b'.', self.size - STAMP);
        }
        buf.split().freeze()
    }

    /// The payload as text (Signalbox data is a `String`), written once into a string of
    /// its own: made as bytes first, it would be copied again and checked as UTF-8.
    pub(crate) fn text(&self) -> String {
        let mut s = String::with_capacity(self.size.max(STAMP));
        // Hex digits: ASCII.
        s.push_str(std::str::from_utf8(&self.digits()).unwrap_or_default());
        let mut pad = self.size.saturating_sub(STAMP);
        while pad > 0 {
            let n = pad.min(PAD.len());
            s.push_str(&PAD[..n]);
            pad -= n;
        }
        s
    }
}

/// Padding, copied a slice at a time.
const PAD: &str = "................................................................";

/// `value`'s lowest `out.len()` hex digits, most significant first. (By hand: the harness
/// makes and reads a stamp for every message, and `fmt` would cost more than some servers do.)
fn hex(out: &mut [u8], value: u64) {
    let n = out.len();
    for (i, d) in out.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[(value >> (4 * (n - 1 - i))) as usize & 0xf];
    }
}

/// Each byte's value as a lowercase hex digit, or `0xff`.
const HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut d = 0;
    while d < 16 {
        t[b"0123456789abcdef"[d] as usize] = d as u8;
        d += 1;
    }
    t
};

/// The number in `digits` (lowercase hex), or `None`. (A table and one check at the end: the
/// harness reads a stamp per delivery, millions a second.)
fn unhex(digits: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    let mut bad = 0u8;
    for &d in digits {
        let v = HEX[d as usize];
        bad |= v;
        n = n << 4 | u64::from(v & 0xf);
    }
    (bad & 0xf0 == 0).then_some(n)
}

/// Reads a payload's stamp: (sender, seq, intended send time in ns since the run's base).
pub(crate) fn read(p: &[u8]) -> Option<(u32, u64, u64)> {
    let p = p.get(..STAMP)?;
    Some((
        u32::try_from(unhex(&p[..8])?).ok()?,
        unhex(&p[8..24])?,
        unhex(&p[24..40])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(sender: u32, seq: u64, t_ns: u64, size: usize, buf: &mut BytesMut) -> Bytes {
        Stamp {
            sender,
            seq,
            t_ns,
            size,
        }
        .bytes(buf)
    }

    #[test]
    fn round_trip_and_size() {
        let mut buf = BytesMut::new();
        let p = make(7, 123_456, 999, 64, &mut buf);
        assert_eq!(p.len(), 64);
        assert_eq!(read(&p), Some((7, 123_456, 999)));
        assert!(std::str::from_utf8(&p).is_ok());
        assert_eq!(make(1, 1, 1, 8, &mut buf).len(), STAMP);
        let max = make(u32::MAX, u64::MAX, u64::MAX, 40, &mut buf);
        assert_eq!(read(&max), Some((u32::MAX, u64::MAX, u64::MAX)));
        assert_eq!(&max[..8], b"ffffffff");
        let mut bad = make(1, 1, 1, 40, &mut buf).to_vec();
        bad[3] = b'g';
        assert_eq!(read(&bad), None);
        assert_eq!(read(b"short"), None);
    }

    /// The text form is the same payload, at every size the benchmark uses and between.
    #[test]
    fn text_and_bytes_are_the_same_payload() {
        let mut buf = BytesMut::new();
        for size in [8, 40, 41, 64, 103, 104, 1024, 8192, 9000] {
            let stamp = Stamp {
                sender: 0xabc,
                seq: 77,
                t_ns: 123_456_789,
                size,
            };
            let text = stamp.text();
            assert_eq!(text.as_bytes(), &stamp.bytes(&mut buf)[..], "size {size}");
            assert_eq!(text.len(), size.max(STAMP));
            assert_eq!(read(text.as_bytes()), Some((0xabc, 77, 123_456_789)));
        }
    }
}
