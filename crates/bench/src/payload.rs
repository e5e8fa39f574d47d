//! What every benchmark message carries: sender, sequence number and intended send time, in
//! ASCII (Signalbox data is UTF-8 text), padded to the message size.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the stamp at the start of each payload.
pub(crate) const STAMP: usize = 40;

/// A payload of `size` bytes (at least [`STAMP`]) stamped with sender, seq and time.
pub(crate) fn make(sender: u32, seq: u64, t_ns: u64, size: usize, buf: &mut BytesMut) -> Bytes {
    use std::fmt::Write;
    buf.reserve(size.max(STAMP));
    let start = buf.len();
    let _ = write!(Hex(buf), "{sender:08x}{seq:016x}{t_ns:016x}");
    while buf.len() - start < size {
        buf.put_u8(b'.');
    }
    buf.split().freeze()
}

struct Hex<'a>(&'a mut BytesMut);

impl std::fmt::Write for Hex<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Reads a payload's stamp: (sender, seq, intended send time in ns since the run's base).
pub(crate) fn read(p: &[u8]) -> Option<(u32, u64, u64)> {
    let s = std::str::from_utf8(p.get(..STAMP)?).ok()?;
    Some((
        u32::from_str_radix(&s[..8], 16).ok()?,
        u64::from_str_radix(&s[8..24], 16).ok()?,
        u64::from_str_radix(&s[24..40], 16).ok()?,
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
    }
}
