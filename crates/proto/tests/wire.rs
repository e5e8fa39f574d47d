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

fn info() -> ConnectionInfo {
    ConnectionInfo {
        id: ID,
        name: "ann".into(),
        role: Role::Moderator,
        data: String::new(),
        joined_at: 1,
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
        RelayMessage::Left {
            connection: ID,
            reason: LeftReason::SlowConsumer,
        },
        format!("03 {ID_HEX} 03"),
    );
    golden!(RelayMessage, RelayMessage::Accepted { up_to: 5 }, "04 05");
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
    golden!(RelayMessage, RelayMessage::Missed { count: 3 }, "07 03");
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
