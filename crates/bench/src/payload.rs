//! What every benchmark message carries: sender, sequence number and intended send time, in
//! ASCII (Signalbox data is UTF-8 text), padded to the message size.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the stamp at the start of each payload.
pub(crate) const STAMP: usize = 40;

/// A payload of `size` bytes (at least [`STAMP`]) stamped with sender, seq and time.
pub(crate) fn make(sender: u32, seq: u64, t_ns: u64, size: usize, buf: &mut BytesMut) -> Bytes {
    buf.reserve(size.max(STAMP));
    hex(buf, u64::from(sender), 8);
    hex(buf, seq, 16);
    hex(buf, t_ns, 16);
    if size > STAMP {
        buf.put_bytes(b'.', size - STAMP);
    }
    buf.split().freeze()
}

/// `value`'s lowest `digits` hex digits, most significant first. (By hand: the harness makes
/// and reads a stamp for every message, and `fmt` would cost more than some servers do.)
fn hex(buf: &mut BytesMut, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        buf.put_u8(b"0123456789abcdef"[(value >> (4 * i)) as usize & 0xf]);
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
}
