//! Every wire message survives encode → frame → decode unchanged, for arbitrary contents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use proptest::prelude::*;
use serde::{Serialize, de::DeserializeOwned};
use signalbox_proto::codec::{self, decode, encode_frame};
use signalbox_proto::*;
use tokio_util::codec::Decoder;

const MAX: usize = 1 << 20;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msg: &T) {
    let mut buf = BytesMut::new();
    encode_frame(msg, &mut buf, MAX).unwrap();
    let payload = codec::codec(MAX).decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    let back: T = decode(&payload).unwrap();
    assert_eq!(&back, msg);
}

fn conn_id() -> impl Strategy<Value = ConnectionId> {
    any::<[u8; 16]>().prop_map(ConnectionId::from_bytes)
}

fn session_id() -> impl Strategy<Value = SessionId> {
    "[A-Za-z0-9_.~-]{1,128}"
        .prop_filter("not . or ..", |s| s != "." && s != "..")
        .prop_map(|s| SessionId::new(s).unwrap())
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Moderator),
        Just(Role::Publisher),
        Just(Role::Subscriber),
        Just(Role::Server)
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::All),
        conn_id().prop_map(Target::One),
        prop::collection::vec(conn_id(), 0..20).prop_map(Target::List),
    ]
}

fn info() -> impl Strategy<Value = ConnectionInfo> {
    (conn_id(), ".{0,64}", role(), ".{0,100}", any::<u64>()).prop_map(
        |(id, name, role, data, joined_at)| ConnectionInfo {
            id,
            name,
            role,
            data,
            joined_at,
        },
    )
}

fn ticket() -> impl Strategy<Value = ResumeTicket> {
    (conn_id(), any::<[u8; 16]>())
        .prop_map(|(connection, secret)| ResumeTicket { connection, secret })
}

fn limits() -> impl Strategy<Value = Limits> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c, d)| Limits {
        max_data_bytes: a,
        signals_per_second: b,
        signal_burst: c,
        max_connections_per_session: d,
    })
}

fn left_reason() -> impl Strategy<Value = LeftReason> {
    prop_oneof![
        Just(LeftReason::ClientDisconnected),
        Just(LeftReason::ForceDisconnected),
        Just(LeftReason::NetworkDisconnected),
        Just(LeftReason::SlowConsumer),
        Just(LeftReason::RelayShutdown),
    ]
}

fn signal_error() -> impl Strategy<Value = SignalError> {
    prop_oneof![
        (any::<char>(), any::<u32>())
            .prop_map(|(found, position)| SignalError::InvalidType { found, position }),
        Just(SignalError::EmptyTargetList),
        (any::<u32>(), any::<u32>())
            .prop_map(|(count, limit)| SignalError::TooManyTargets { count, limit }),
        role().prop_map(|role| SignalError::Forbidden { role }),
        conn_id().prop_map(|connection| SignalError::TargetNotFound { connection }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(len, limit)| SignalError::TypeTooLong { len, limit }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(len, limit)| SignalError::DataTooLong { len, limit }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(per_second, burst)| SignalError::RateLimited { per_second, burst }),
    ]
}

fn refuse_code() -> impl Strategy<Value = RefuseCode> {
    prop_oneof![
        Just(RefuseCode::BadRequest),
        Just(RefuseCode::InvalidToken),
        Just(RefuseCode::TokenExpired),
        Just(RefuseCode::WrongSession),
        Just(RefuseCode::SessionFull),
        Just(RefuseCode::RelayFull),
        Just(RefuseCode::UnsupportedProtocol),
        Just(RefuseCode::ResumeFailed),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u16>(),
        session_id(),
        proptest::option::of(".{0,300}"),
        proptest::option::of(".{0,64}"),
        proptest::option::of(ticket()),
        any::<bool>(),
        prop::collection::vec(
            (proptest::option::of(conn_id()), any::<u64>())
                .prop_map(|(from, seq)| Seen { from, seq }),
            0..4,
        ),
    )
        .prop_map(
            |(protocol, session, token, name, resume, receive_broadcasts, seen)| Hello {
                protocol,
                session,
                token,
                name,
                resume,
                receive_broadcasts,
                seen,
            },
        )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        hello().prop_map(ClientMessage::Hello),
        conn_id().prop_map(|connection| ClientMessage::Kick { connection }),
        Just(ClientMessage::Leave),
    ]
}

fn relay_message() -> impl Strategy<Value = RelayMessage> {
    prop_oneof![
        (
            info(),
            prop::collection::vec(info(), 0..5),
            limits(),
            ticket(),
            any::<u64>()
        )
            .prop_map(
                |(me, peers, limits, resume, accepted_up_to)| RelayMessage::Welcome(Welcome {
                    me,
                    peers,
                    limits,
                    resume,
                    accepted_up_to
                })
            ),
        (refuse_code(), ".{0,200}")
            .prop_map(|(code, message)| RelayMessage::Refused(Refused { code, message })),
        info().prop_map(RelayMessage::Joined),
        (conn_id(), left_reason())
            .prop_map(|(connection, reason)| RelayMessage::Left { connection, reason }),
        any::<u64>().prop_map(|up_to| RelayMessage::Accepted { up_to }),
        (any::<u64>(), signal_error())
            .prop_map(|(seq, error)| RelayMessage::Rejected { seq, error }),
        ".{0,100}".prop_map(|message| RelayMessage::Denied { message }),
        (
            proptest::option::of(conn_id()),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(from, first, last, count)| RelayMessage::Missed {
                from,
                first,
                last,
                count
            }),
        (any::<u32>(), ".{0,100}")
            .prop_map(|(code, reason)| RelayMessage::Closing { code, reason }),
    ]
}

proptest! {
    #[test]
    fn client_messages(msg in client_message()) { round_trip(&msg); }

    #[test]
    fn relay_messages(msg in relay_message()) { round_trip(&msg); }

    #[test]
    fn outgoing(seq in any::<u64>(), to in target(), ty in ".{0,130}", data in ".{0,2000}") {
        let msg = Outgoing { seq, to, r#type: ty.into(), data: data.into() };
        let mut buf = BytesMut::new();
        encode_frame(&msg, &mut buf, MAX).unwrap();
        let back: Outgoing<'_> = decode(&buf[4..]).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn incoming(seq in any::<u64>(), to_all in any::<bool>(), ty in ".{0,130}", data in ".{0,2000}") {
        let msg = Incoming { seq, to_all, r#type: ty.into(), data: data.into() };
        let mut buf = BytesMut::new();
        encode_frame(&msg, &mut buf, MAX).unwrap();
        let back: Incoming<'_> = decode(&buf[4..]).unwrap();
        prop_assert_eq!(&back, &msg);
        // The same frame read as bytes: the same fields, the text's bytes unchanged.
        let raw: IncomingBytes<'_> = decode(&buf[4..]).unwrap();
        prop_assert_eq!((raw.seq, raw.to_all), (msg.seq, msg.to_all));
        prop_assert_eq!(raw.r#type, msg.r#type.as_bytes());
        prop_assert_eq!(raw.data, msg.data.as_bytes());
    }

    #[test]
    fn delivery_header(from in proptest::option::of(conn_id())) {
        round_trip(&DeliveryHeader { from });
    }

    #[test]
    fn invites(host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5})?", port in 1u16.., session in session_id(),
               fp in proptest::option::of(any::<[u8; 32]>()), token in proptest::option::of("[A-Za-z0-9_.-]{1,200}")) {
        let invite = Invite { host, port, session, fingerprint: fp.map(Fingerprint), token };
        let back: Invite = invite.to_string().parse().unwrap();
        prop_assert_eq!(back, invite);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<ClientMessage>(&bytes);
        let _ = decode::<RelayMessage>(&bytes);
        let _ = decode::<Outgoing<'_>>(&bytes);
        let _ = decode::<Incoming<'_>>(&bytes);
        let _ = decode::<IncomingBytes<'_>>(&bytes);
    }

    #[test]
    fn type_rule_matches_the_character_class(ty in ".{0,140}") {
        let ok = ty.len() <= 128 && ty.chars().all(|c| c.is_ascii_alphanumeric() || "-_~".contains(c));
        prop_assert_eq!(signal::validate_type(&ty).is_ok(), ok);
    }

    #[test]
    fn session_rule_matches_the_character_class(s in ".{0,140}") {
        let ok = !s.is_empty() && s != "." && s != ".." && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.~-".contains(c));
        prop_assert_eq!(SessionId::new(s).is_ok(), ok);
    }
}
