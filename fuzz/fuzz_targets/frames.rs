//! What a relay or client reads from a peer, from arbitrary bytes: the frame decoder, every
//! message kind, signal validation, and (for what decodes) encode → decode round trips.
//! Also invites, session ids and fingerprints from arbitrary text.
//!
//! `cargo +nightly fuzz run frames` (from the repository root).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use signalbox_proto::codec::{self, decode};
use signalbox_proto::{
    ClientMessage, DeliveryHeader, Fingerprint, Incoming, Invite, Limits, Outgoing,
    RelayMessage, SessionId, signal,
};
use tokio_util::codec::Decoder;

fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let framed = codec::frame(msg, usize::MAX).expect("what decoded encodes");
    let again: T = decode(&framed[4..]).expect("what encoded decodes");
    assert_eq!(&again, msg);
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut frames = codec::codec(1 << 16);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        if let Ok(m) = decode::<ClientMessage>(&frame) {
            round_trip(&m);
        }
        if let Ok(m) = decode::<RelayMessage>(&frame) {
            round_trip(&m);
        }
        if let Ok(m) = decode::<DeliveryHeader>(&frame) {
            round_trip(&m);
        }
        if let Ok(m) = decode::<Incoming<'_>>(&frame) {
            let owned = Incoming { r#type: m.r#type.to_string().into(), data: m.data.to_string().into(), ..m };
            let framed = codec::frame(&owned, usize::MAX).expect("encodes");
            assert_eq!(decode::<Incoming<'_>>(&framed[4..]).expect("decodes"), owned);
        }
        if let Ok(o) = decode::<Outgoing<'_>>(&frame) {
            let _ = signal::validate_signal(&o.r#type, &o.data, &o.to, &Limits::default());
            let framed = codec::frame(&o, usize::MAX).expect("encodes");
            assert_eq!(decode::<Outgoing<'_>>(&framed[4..]).expect("decodes"), o);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(invite) = text.parse::<Invite>() {
            let again: Invite = invite.to_string().parse().expect("a printed invite parses");
            assert_eq!(again, invite);
        }
        let _ = SessionId::new(text);
        let _ = text.parse::<Fingerprint>();
        let _ = signal::validate_type(text);
    }
});
