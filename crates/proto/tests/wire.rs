//! Golden bytes: the exact encodings that `crates/proto/README.md` documents. If one of these
//! changes, the wire format changed — bump the protocol version and update the README.

#![allow(clippy::unwrap_used)]

use signalbox_proto::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// `msg` encodes to exactly `bytes` (framed: a big-endian u32 length, then the payload), and
/// `bytes` decode to `msg`. A macro, because signals borrow their strings from the frame.
macro_rules! golden {
    ($ty:ty, $msg:expr, $bytes:expr $(,)?) => {{
        let msg: $ty = $msg;
        let expected = hex(&$bytes);
        assert_eq!(postcard::to_allocvec(&msg).unwrap(), expected, "{msg:?}");
        assert_eq!(codec::decode::<$ty>(&expected).unwrap(), msg);
        let framed = codec::frame(&msg, usize::MAX).unwrap();
        assert_eq!(&framed[..4], &(expected.len() as u32).to_be_bytes());
        assert_eq!(&framed[4..], &expected[..]);
    }};
}

const ID: ConnectionId = ConnectionId::from_bytes([0x11; 16]);
const ID_HEX: &str = "10 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11";
const ID2: ConnectionId = ConnectionId::from_bytes([0x33; 16]);
const ID2_HEX: &str = "10 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33";
/// A resume ticket's secret, `[0x22; 16]`: sixteen raw bytes, no length.
const SECRET_HEX: &str = "22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22";

fn info() -> ConnectionInfo {
    ConnectionInfo {
        id: ID,
        name: "ann".into(),
        role: Role::Moderator,
        data: String::new(),
        joined_at: 1,
    }
}

/// A peer with connection data and a realistic `joined_at` (2023-11-14T22:13:20Z in ms).
fn peer() -> ConnectionInfo {
    ConnectionInfo {
        id: ID2,
        name: "bo".into(),
        role: Role::Publisher,
        data: "{}".into(),
        joined_at: 1_700_000_000_000,
    }
}

#[test]
fn client_messages() {
    golden!(
        ClientMessage,
        ClientMessage::Hello(Hello {
            protocol: 1,
            session: SessionId::new("lobby").unwrap(),
            token: None,
            name: Some("ann".into()),
            resume: None,
            receive_broadcasts: true,
            seen: vec![],
        }),
        "00 01 05 6c 6f 62 62 79 00 01 03 61 6e 6e 00 01 00",
    );
    // A resume: token, ticket and what was received from each sender (`None`: the relay).
    golden!(
        ClientMessage,
        ClientMessage::Hello(Hello {
            protocol: 1,
            session: SessionId::new("lobby").unwrap(),
            token: Some("t".into()),
            name: None,
            resume: Some(ResumeTicket {
                connection: ID,
                secret: [0x22; 16],
            }),
            receive_broadcasts: false,
            seen: vec![
                Seen {
                    from: Some(ID),
                    seq: 300,
                },
                Seen { from: None, seq: 2 },
            ],
        }),
        format!(
            "00 01 05 6c 6f 62 62 79 01 01 74 00 01 {ID_HEX} {SECRET_HEX} 00 02 01 {ID_HEX} ac 02 00 02"
        ),
    );
    golden!(
        ClientMessage,
        ClientMessage::Kick { connection: ID },
        format!("01 {ID_HEX}")
    );
    golden!(ClientMessage, ClientMessage::Leave, "02");
}

#[test]
fn signals() {
    golden!(
        Outgoing<'_>,
        Outgoing {
            seq: 1,
            to: Target::All,
            r#type: "chat".into(),
            data: "hi".into(),
        },
        "01 00 04 63 68 61 74 02 68 69",
    );
    golden!(
        Outgoing<'_>,
        Outgoing {
            seq: 300,
            to: Target::All,
            r#type: "chat".into(),
            data: "hi".into(),
        },
        "ac 02 00 04 63 68 61 74 02 68 69",
    );
    golden!(
        Outgoing<'_>,
        Outgoing {
            seq: 1,
            to: Target::One(ID),
            r#type: "".into(),
            data: "".into(),
        },
        format!("01 01 {ID_HEX} 00 00"),
    );
    golden!(
        Outgoing<'_>,
        Outgoing {
            seq: 2,
            to: Target::List(vec![ID, ID]),
            r#type: "".into(),
            data: "".into(),
        },
        format!("02 02 02 {ID_HEX} {ID_HEX} 00 00"),
    );
    golden!(
        Incoming<'_>,
        Incoming {
            seq: 300,
            to_all: true,
            r#type: "chat".into(),
            data: "hi".into(),
        },
        "ac 02 01 04 63 68 61 74 02 68 69",
    );
    golden!(
        Incoming<'_>,
        Incoming {
            seq: 1,
            to_all: true,
            r#type: "chat".into(),
            data: "hi".into(),
        },
        "01 01 04 63 68 61 74 02 68 69",
    );
    golden!(
        Incoming<'_>,
        Incoming {
            seq: 1,
            to_all: false,
            r#type: "".into(),
            data: "".into(),
        },
        "01 00 00 00",
    );
    golden!(
        DeliveryHeader,
        DeliveryHeader { from: Some(ID) },
        format!("01 {ID_HEX}")
    );
    golden!(DeliveryHeader, DeliveryHeader { from: None }, "00");
}

#[test]
fn relay_messages() {
    golden!(
        RelayMessage,
        RelayMessage::Welcome(Welcome {
            me: info(),
            peers: vec![],
            limits: Limits::default(),
            resume: ResumeTicket {
                connection: ID,
                secret: [0x22; 16],
            },
            accepted_up_to: 0,
        }),
        format!(
            "00 {ID_HEX} 03 61 6e 6e 00 00 01 00 80 40 90 4e a0 9c 01 b8 17 {ID_HEX} {} 00",
            "22 ".repeat(16).trim()
        ),
    );
    // A resume into a session with one other member, under small limits.
    golden!(
        RelayMessage,
        RelayMessage::Welcome(Welcome {
            me: info(),
            peers: vec![peer()],
            limits: Limits {
                max_data_bytes: 100,
                signals_per_second: 0,
                signal_burst: 1,
                max_connections_per_session: 2,
            },
            resume: ResumeTicket {
                connection: ID,
                secret: [0x22; 16],
            },
            accepted_up_to: 7,
        }),
        format!(
            "00 {ID_HEX} 03 61 6e 6e 00 00 01 01 {ID2_HEX} 02 62 6f 01 02 7b 7d 80 d0 95 ff bc 31 64 00 01 02 {ID_HEX} {SECRET_HEX} 07"
        ),
    );
    golden!(
        RelayMessage,
        RelayMessage::Refused(Refused {
            code: RefuseCode::TokenExpired,
            message: "x".into(),
        }),
        "01 02 01 78",
    );
    golden!(
        RelayMessage,
        RelayMessage::Joined(info()),
        format!("02 {ID_HEX} 03 61 6e 6e 00 00 01"),
    );
    golden!(
        RelayMessage,
        RelayMessage::Joined(peer()),
        format!("02 {ID2_HEX} 02 62 6f 01 02 7b 7d 80 d0 95 ff bc 31"),
    );
    golden!(
        RelayMessage,
        RelayMessage::Left {
            connection: ID,
            reason: LeftReason::SlowConsumer,
        },
        format!("03 {ID_HEX} 03"),
    );
    golden!(RelayMessage, RelayMessage::Accepted { up_to: 5 }, "04 05");
    golden!(RelayMessage, RelayMessage::Accepted { up_to: 1 }, "04 01");
    golden!(
        RelayMessage,
        RelayMessage::Rejected {
            seq: 2,
            error: SignalError::InvalidType {
                found: ' ',
                position: 3,
            },
        },
        "05 02 00 01 20 03",
    );
    golden!(
        RelayMessage,
        RelayMessage::Rejected {
            seq: 2,
            error: SignalError::DataTooLong {
                len: 9000,
                limit: 8192,
            },
        },
        "05 02 06 a8 46 80 40",
    );
    golden!(
        RelayMessage,
        RelayMessage::Denied {
            message: "no".into(),
        },
        "06 02 6e 6f",
    );
    golden!(
        RelayMessage,
        RelayMessage::Missed {
            from: None,
            first: 4,
            last: 9,
            count: 3
        },
        "07 00 04 09 03",
    );
    golden!(
        RelayMessage,
        RelayMessage::Missed {
            from: Some(ID),
            first: 1,
            last: 300,
            count: 250,
        },
        format!("07 01 {ID_HEX} 01 ac 02 fa 01"),
    );
    golden!(
        RelayMessage,
        RelayMessage::Closing {
            code: 3,
            reason: "bye".into(),
        },
        "08 03 03 62 79 65",
    );
}

#[test]
fn every_refuse_code() {
    let codes = [
        (RefuseCode::BadRequest, 0u8, 400u16),
        (RefuseCode::InvalidToken, 1, 401),
        (RefuseCode::TokenExpired, 2, 401),
        (RefuseCode::WrongSession, 3, 403),
        (RefuseCode::SessionFull, 4, 1027),
        (RefuseCode::RelayFull, 5, 503),
        (RefuseCode::UnsupportedProtocol, 6, 426),
        (RefuseCode::ResumeFailed, 7, 410),
    ];
    for (code, index, number) in codes {
        assert_eq!(code.code(), number, "{code:?}");
        golden!(
            RelayMessage,
            RelayMessage::Refused(Refused {
                code,
                message: "x".into(),
            }),
            format!("01 {index:02x} 01 78"),
        );
    }
}

#[test]
fn every_left_reason() {
    let reasons = [
        (LeftReason::ClientDisconnected, 0u8, "clientDisconnected"),
        (LeftReason::ForceDisconnected, 1, "forceDisconnected"),
        (LeftReason::NetworkDisconnected, 2, "networkDisconnected"),
        (LeftReason::SlowConsumer, 3, "slowConsumer"),
        (LeftReason::RelayShutdown, 4, "relayShutdown"),
    ];
    for (reason, index, name) in reasons {
        assert_eq!(reason.as_str(), name);
        golden!(
            RelayMessage,
            RelayMessage::Left {
                connection: ID,
                reason,
            },
            format!("03 {ID_HEX} {index:02x}"),
        );
    }
}

#[test]
fn every_signal_error() {
    let errors: [(SignalError, String, u16); 11] = [
        (
            SignalError::InvalidType {
                found: ' ',
                position: 3,
            },
            "00 01 20 03".into(),
            400,
        ),
        // A char is a string of its UTF-8 bytes: 'é' is `02 c3 a9`.
        (
            SignalError::InvalidType {
                found: 'é',
                position: 0,
            },
            "00 02 c3 a9 00".into(),
            400,
        ),
        (SignalError::EmptyTargetList, "01".into(), 400),
        (
            SignalError::TooManyTargets {
                count: 3001,
                limit: 3000,
            },
            "02 b9 17 b8 17".into(),
            400,
        ),
        (
            SignalError::Forbidden {
                role: Role::Subscriber,
            },
            "03 02".into(),
            403,
        ),
        (
            SignalError::TargetNotFound { connection: ID },
            format!("04 {ID_HEX}"),
            404,
        ),
        (
            SignalError::TypeTooLong {
                len: 129,
                limit: 128,
            },
            "05 81 01 80 01".into(),
            413,
        ),
        (
            SignalError::DataTooLong {
                len: 9000,
                limit: 8192,
            },
            "06 a8 46 80 40".into(),
            413,
        ),
        (
            SignalError::RateLimited {
                per_second: 10_000,
                burst: 20_000,
            },
            "07 90 4e a0 9c 01".into(),
            429,
        ),
        (
            SignalError::DuplicateTarget { connection: ID },
            format!("08 {ID_HEX}"),
            400,
        ),
        (
            SignalError::FanoutRateLimited {
                bytes_per_second: 134_217_728,
            },
            "09 80 80 80 40".into(),
            429,
        ),
    ];
    for (error, bytes, code) in errors {
        assert_eq!(error.code(), code, "{error:?}");
        golden!(
            RelayMessage,
            RelayMessage::Rejected { seq: 2, error },
            format!("05 02 {bytes}"),
        );
    }
}

#[test]
fn every_role() {
    let roles = [
        (Role::Moderator, "00"),
        (Role::Publisher, "01"),
        (Role::Subscriber, "02"),
        (Role::Server, "03"),
    ];
    for (role, bytes) in roles {
        golden!(Role, role, bytes);
    }
}

/// The framed bytes (length prefix included) of the README's walk-through, step by step.
#[test]
fn walkthrough_frames() {
    fn framed<T: serde::Serialize + ?Sized>(msg: &T) -> Vec<u8> {
        codec::frame(msg, usize::MAX).unwrap().to_vec()
    }
    // 1. Control stream, client → relay.
    let hello = ClientMessage::Hello(Hello {
        protocol: 1,
        session: SessionId::new("lobby").unwrap(),
        token: None,
        name: Some("ann".into()),
        resume: None,
        receive_broadcasts: true,
        seen: vec![],
    });
    assert_eq!(
        framed(&hello),
        hex("00 00 00 11 00 01 05 6c 6f 62 62 79 00 01 03 61 6e 6e 00 01 00")
    );
    // 2. Control stream, relay → client.
    let welcome = RelayMessage::Welcome(Welcome {
        me: info(),
        peers: vec![],
        limits: Limits::default(),
        resume: ResumeTicket {
            connection: ID,
            secret: [0x22; 16],
        },
        accepted_up_to: 0,
    });
    assert_eq!(
        framed(&welcome),
        hex(&format!(
            "00 00 00 45 00 {ID_HEX} 03 61 6e 6e 00 00 01 00 80 40 90 4e a0 9c 01 b8 17 {ID_HEX} {SECRET_HEX} 00"
        ))
    );
    // 3. Send stream, client → relay.
    let out = Outgoing {
        seq: 1,
        to: Target::All,
        r#type: "chat".into(),
        data: "hi".into(),
    };
    assert_eq!(
        framed(&out),
        hex("00 00 00 0a 01 00 04 63 68 61 74 02 68 69")
    );
    // 4. Control stream, relay → client.
    assert_eq!(
        framed(&RelayMessage::Accepted { up_to: 1 }),
        hex("00 00 00 02 04 01")
    );
    // 5. A delivery stream, relay → client: the header, then the signal.
    assert_eq!(
        framed(&DeliveryHeader { from: Some(ID) }),
        hex(&format!("00 00 00 12 01 {ID_HEX}"))
    );
    let inc = Incoming {
        seq: 1,
        to_all: true,
        r#type: "chat".into(),
        data: "hi".into(),
    };
    assert_eq!(
        framed(&inc),
        hex("00 00 00 0a 01 01 04 63 68 61 74 02 68 69")
    );
    // 6. Control stream, client → relay.
    assert_eq!(framed(&ClientMessage::Leave), hex("00 00 00 01 02"));
}

#[test]
fn close_codes_are_stable() {
    let codes: Vec<u32> = [
        CloseCode::Normal,
        CloseCode::ProtocolError,
        CloseCode::Refused,
        CloseCode::Kicked,
        CloseCode::SlowConsumer,
        CloseCode::RelayShutdown,
        CloseCode::HandshakeTimeout,
        CloseCode::Abandoned,
    ]
    .iter()
    .map(|c| c.as_u32())
    .collect();
    assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7]);
    for c in codes {
        assert_eq!(CloseCode::from_u32(c).unwrap().as_u32(), c);
    }
}
