//! Shared helpers for the end-to-end tests: a real relay on 127.0.0.1:0 in a temporary data
//! directory, clients made with the client crate, and a raw protocol speaker for the tests
//! that must send what a well-behaved client never would.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

pub mod local;

#[allow(unused_imports)] // not every test binary needs them
pub use local::{free_tcp_port, free_udp_port};

use bytes::BytesMut;
use futures_util::StreamExt;
use signalbox_client::{Client, ConnectOptions, Event, Events, ReceivedSignal, Signal};
use signalbox_proto::codec::{self, MAX_CONTROL_FRAME};
use signalbox_proto::{ClientMessage, Hello, PROTOCOL_VERSION, RelayMessage, Role};
use tokio_util::codec::FramedRead;

#[allow(unused_imports)] // not every test binary waits
pub use signalbox_relay::test_utils::{TestRelay, WAIT, wait_for};

/// Clients of a [`TestRelay`], made with the client crate.
#[allow(async_fn_in_trait)] // used only by these tests, on one runtime
pub trait Join {
    /// Options to join the test session as `role`, named `name`.
    fn options(&self, role: Role, name: &str) -> ConnectOptions;
    /// A publisher named `name`.
    async fn join(&self, name: &str) -> (Client, Events);
    /// A publisher that only sends: the relay does not deliver it broadcasts.
    async fn join_sender(&self, name: &str) -> (Client, Events);
    /// A client as `role`, named `name`.
    async fn join_as(&self, role: Role, name: &str) -> (Client, Events);
}

impl Join for TestRelay {
    fn options(&self, role: Role, name: &str) -> ConnectOptions {
        ConnectOptions::new("127.0.0.1", self.handle.quic_addr().port(), Self::session())
            .with_fingerprint(self.handle.fingerprint())
            .with_token(self.token(role, name))
    }

    async fn join(&self, name: &str) -> (Client, Events) {
        self.join_as(Role::Publisher, name).await
    }

    async fn join_sender(&self, name: &str) -> (Client, Events) {
        let options = self
            .options(Role::Publisher, name)
            .with_receive_broadcasts(false);
        Client::connect(options).await.unwrap()
    }

    async fn join_as(&self, role: Role, name: &str) -> (Client, Events) {
        Client::connect(self.options(role, name)).await.unwrap()
    }
}

/// The next event that `pick` accepts, skipping others; panics after [`WAIT`].
pub async fn expect<T>(
    events: &mut Events,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Some(t) = pick(event) {
                return Some(t);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        Ok(None) => panic!("events ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits until these events report that `id` joined (before addressing it: a client only
/// sends to connections it knows are there).
pub async fn sees_join(events: &mut Events, id: signalbox_proto::ConnectionId) {
    expect(events, "a join", |e| match e {
        Event::Joined(p) if p.id == id => Some(()),
        _ => None,
    })
    .await
}

/// Broadcasts `n` signals of type `ty` (the i-th carries `data(i)`, i from 1) and waits until
/// the relay accepted the last; returns its seq.
pub async fn send_many(client: &Client, ty: &str, n: u64, data: impl Fn(u64) -> String) -> u64 {
    let mut last = None;
    for i in 1..=n {
        last = Some(client.send(Signal::to_all(ty, data(i))).await.unwrap());
    }
    last.expect("n ≥ 1").accepted().await.unwrap()
}

/// The next signal, skipping presence.
pub async fn next_signal(events: &mut Events) -> ReceivedSignal {
    expect(events, "a signal", |e| match e {
        Event::Signal(s) => Some(s),
        _ => None,
    })
    .await
}

/// Twenty rounds of a one-shot sender (joined on `sender_relay`) that sends three signals and
/// leaves at once, as `signalbox send` does: the listener whose events are `listener` must
/// hear all three, in order, before it hears the sender leave.
pub async fn one_shot_senders_are_heard_before_they_leave(
    sender_relay: &TestRelay,
    listener: &mut Events,
) {
    for round in 0..20u64 {
        let (s, _s_ev) = sender_relay.join("one-shot").await;
        let id = s.me().id;
        sees_join(listener, id).await;
        send_many(&s, "shot", 3, |i| format!("{round}.{i}")).await;
        s.leave().await;
        let mut heard = Vec::new();
        expect(listener, "the one-shot sender leaving", |e| match e {
            Event::Signal(sig) if sig.from == Some(id) => {
                heard.push(sig.data);
                None
            }
            Event::Left { peer, .. } if peer.id == id => Some(()),
            _ => None,
        })
        .await;
        let want: Vec<String> = (1..=3).map(|i| format!("{round}.{i}")).collect();
        assert_eq!(heard, want, "round {round}: every signal before the Left");
    }
}

/// `n` signals, skipping presence.
pub async fn signals(events: &mut Events, n: usize) -> Vec<ReceivedSignal> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_signal(events).await);
    }
    out
}

/// Asserts that no signal arrives within `quiet` (for "reaches only its targets").
pub async fn no_signal(events: &mut Events, quiet: Duration) {
    let got = tokio::time::timeout(quiet, async {
        loop {
            match events.next().await {
                Some(Event::Signal(s)) => return Some(s),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    if let Ok(Some(s)) = got {
        panic!("unexpected signal {s:?}");
    }
}

/// A connection that speaks the wire protocol by hand.
pub struct Raw {
    pub conn: quinn::Connection,
    pub control: quinn::SendStream,
    pub frames: FramedRead<quinn::RecvStream, tokio_util::codec::LengthDelimitedCodec>,
    pub welcome: Option<signalbox_proto::Welcome>,
    _endpoint: quinn::Endpoint,
}

impl Raw {
    /// Connects and sends `Hello`; reads the first answer into `welcome` (or returns it).
    pub async fn join(relay: &TestRelay, token: Option<String>) -> (Self, RelayMessage) {
        Self::join_resuming(relay, token, None).await
    }

    /// As `join`, resuming the connection of `resume`.
    pub async fn join_resuming(
        relay: &TestRelay,
        token: Option<String>,
        resume: Option<signalbox_proto::ResumeTicket>,
    ) -> (Self, RelayMessage) {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            session: TestRelay::session(),
            token,
            name: Some("raw".into()),
            resume,
            receive_broadcasts: true,
            seen: vec![],
        };
        Self::join_with(relay, hello).await
    }

    /// Connects and sends this `Hello`, whatever it says.
    pub async fn join_with(relay: &TestRelay, hello: Hello) -> (Self, RelayMessage) {
        Self::join_with_transport(relay, hello, None).await
    }

    /// As `join_with`, with QUIC settings of its own (`None`: the client library's).
    pub async fn join_with_transport(
        relay: &TestRelay,
        hello: Hello,
        transport: Option<quinn::TransportConfig>,
    ) -> (Self, RelayMessage) {
        // The client library's endpoint and settings, as a real client has them.
        let endpoint = signalbox_client::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut config = signalbox_client::client_config(
            Some(relay.handle.fingerprint()),
            relay.handle.quic_addr().ip(),
        )
        .unwrap();
        if let Some(t) = transport {
            config.transport_config(std::sync::Arc::new(t));
        }
        let conn = endpoint
            .connect_with(config, relay.handle.quic_addr(), "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut control, recv) = conn.open_bi().await.unwrap();
        let hello = ClientMessage::Hello(hello);
        control
            .write_all(&codec::frame(&hello, MAX_CONTROL_FRAME).unwrap())
            .await
            .unwrap();
        let mut frames = FramedRead::new(recv, codec::codec(MAX_CONTROL_FRAME));
        let first = frames.next().await.unwrap().unwrap();
        let msg: RelayMessage = codec::decode(&first).unwrap();
        let welcome = match &msg {
            RelayMessage::Welcome(w) => Some(w.clone()),
            _ => None,
        };
        (
            Self {
                conn,
                control,
                frames,
                welcome,
                _endpoint: endpoint,
            },
            msg,
        )
    }

    /// The next control message.
    pub async fn next_control(&mut self) -> Option<RelayMessage> {
        let frame = tokio::time::timeout(WAIT, self.frames.next())
            .await
            .ok()??
            .ok()?;
        codec::decode(&frame).ok()
    }

    /// Opens the send stream and writes raw bytes to it.
    pub async fn open_send(&self) -> quinn::SendStream {
        self.conn.open_uni().await.unwrap()
    }
}

/// One encoded frame.
pub fn frame<T: serde::Serialize>(msg: &T) -> BytesMut {
    codec::frame(msg, usize::MAX).unwrap()
}
