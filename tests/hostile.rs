//! What a hostile peer sends, against a real relay: each test is one finding of the security
//! review, and fails if the hole it names opens again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_client::{Client, ConnectOptions};
use signalbox_proto::SessionId;

const API_KEY: &str = "47700001";
const API_SECRET: &str = "5f1ce0c1a4a9d3e2b6f7a8091b2c3d4e5f607182";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(API_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A server-call token as the SDKs mint it: three minutes of life.
fn project_token() -> String {
    sign(
        &json!({"iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 180, "jti": "0.42"}),
    )
}

/// A client token as the SDKs mint it for `role` (same key, same `iss` and `ist`).
fn client_token(session: &str, role: &str) -> String {
    sign(&json!({
        "iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 86_400, "nonce": 0.5,
        "scope": "session.connect", "session_id": session, "role": role,
        "connection_data": "name=mallory", "initial_layout_class_list": ""
    }))
}

async fn vonage_relay() -> (TestRelay, String) {
    let relay = TestRelay::start_with(|c| {
        c.http = Some("127.0.0.1:0".parse().unwrap());
        c.vonage_api_key = Some(API_KEY.into());
        c.vonage_api_secret = Some(API_SECRET.into());
    })
    .await;
    let base = format!("http://{}", relay.handle.http_addr().unwrap());
    (relay, base)
}

/// Item 1 (critical): a participant's client token is not a server credential. It joins its
/// session, but lists, signals, force-disconnects and creates sessions nowhere.
#[tokio::test]
async fn a_client_token_is_not_a_server_credential() {
    let (relay, base) = vonage_relay().await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/session/create"))
        .header("x-opentok-auth", project_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = created[0]["session_id"].as_str().unwrap().to_owned();

    // A victim in the session, and the attacker joined with its own (valid) subscriber token.
    let options = |token: String| {
        ConnectOptions::new(
            "127.0.0.1",
            relay.handle.quic_addr().port(),
            SessionId::new(sid.clone()).unwrap(),
        )
        .with_fingerprint(relay.handle.fingerprint())
        .with_token(token)
    };
    let (victim, mut victim_events) = Client::connect(options(client_token(&sid, "publisher")))
        .await
        .unwrap();
    let attacker_token = client_token(&sid, "subscriber");
    let (_attacker, _) = Client::connect(options(attacker_token.clone()))
        .await
        .unwrap();
    let victim_id = victim.me().id;

    let conn = format!("{base}/v2/project/{API_KEY}/session/{sid}/connection");
    let signal_body = json!({"type": "chat", "data": "forged"});
    for token in [
        attacker_token,
        client_token(&sid, "moderator"),
        client_token("another-session", "publisher"),
    ] {
        let calls = [
            http.get(&conn),
            http.post(format!("{base}/v2/project/{API_KEY}/session/{sid}/signal"))
                .json(&signal_body),
            http.post(format!("{conn}/{victim_id}/signal"))
                .json(&signal_body),
            http.delete(format!("{conn}/{victim_id}")),
            http.post(format!("{base}/session/create")),
        ];
        for call in calls {
            let r = call.header("x-opentok-auth", &token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{:?}", r.url());
        }
    }

    // A token with a project's claims but a day of life is refused too; a real one works.
    let long =
        sign(&json!({"iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 86_400}));
    let r = http
        .get(&conn)
        .header("x-opentok-auth", long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .get(&conn)
        .header("x-opentok-auth", project_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["count"], 2);

    // Nothing forged reached the victim, and it is still there.
    no_signal(&mut victim_events, std::time::Duration::from_millis(300)).await;
    assert_eq!(relay.handle.members(&SessionId::new(sid).unwrap()).len(), 2);
}

/// Item 3: a short or empty secret is refused at start, with a clear error (an empty
/// `token-secret` once let a token signed with the empty key join as `server`).
#[tokio::test]
async fn short_secrets_are_refused_at_start() {
    use signalbox_relay::{Relay, RelayConfig};
    for (file, content) in [
        ("token-secret", String::new()),
        ("token-secret", "0123456789abcdef".into()),
        (
            "vonage.json",
            r#"{"api_key":"1234","api_secret":"abc"}"#.into(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), content).unwrap();
        let mut config = RelayConfig::local(dir.path());
        config.http = Some("127.0.0.1:0".parse().unwrap());
        let err = Relay::spawn(config).await.unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{file}: {err}");
        assert!(err.contains(file), "the error names the file: {err}");
    }
    // Secrets the relay makes are long, and private.
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::spawn(RelayConfig::local(dir.path())).await.unwrap();
    relay.shutdown().await;
    for file in ["token-secret", "vonage.json"] {
        let meta = std::fs::metadata(dir.path().join(file)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
}

/// A quinn endpoint that speaks to the relay as its clients do, for the raw tests.
fn raw_endpoint(relay: &TestRelay) -> (quinn::Endpoint, quinn::ClientConfig) {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = signalbox_client::client_config(
        Some(relay.handle.fingerprint()),
        relay.handle.quic_addr().ip(),
    )
    .unwrap();
    (endpoint, config)
}

fn close_code(e: &quinn::ConnectionError) -> Option<u64> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
        _ => None,
    }
}

/// Item 2: before `Hello`, a connection is cheap and short-lived. One that never says
/// `Hello`, and one that announces a 16 MiB control frame and trickles it, are closed within
/// 5 s; a `Hello` whose resume `seen` list is longer than a session can be is refused.
#[tokio::test]
async fn connections_that_do_not_join_are_closed_quickly() {
    use signalbox_proto::CloseCode;
    use std::time::{Duration, Instant};
    let relay = TestRelay::start_with(|c| c.max_connections_per_session = 4).await;
    let (endpoint, config) = raw_endpoint(&relay);
    let addr = relay.handle.quic_addr();
    let start = Instant::now();
    let idle = endpoint
        .connect_with(config.clone(), addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let trickle = endpoint
        .connect_with(config.clone(), addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = trickle.open_bi().await.unwrap();
    send.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
    let trickling = async {
        loop {
            if send.write_all(&[0]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (idle_end, trickle_end) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(idle.closed(), async {
            tokio::select! {
                e = trickle.closed() => e,
                _ = trickling => trickle.closed().await,
            }
        })
    })
    .await
    .expect("both closed within 5 s");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        close_code(&idle_end),
        Some(u64::from(CloseCode::HandshakeTimeout.as_u32()))
    );
    assert_eq!(
        close_code(&trickle_end),
        Some(u64::from(CloseCode::ProtocolError.as_u32()))
    );

    // A resume naming more senders than a session holds.
    let conn = endpoint
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut control, _recv) = conn.open_bi().await.unwrap();
    let seen = (0..10)
        .map(|_| signalbox_proto::Seen {
            from: Some(signalbox_proto::ConnectionId::random()),
            seq: 1,
        })
        .collect();
    let hello = signalbox_proto::ClientMessage::Hello(signalbox_proto::Hello {
        protocol: signalbox_proto::PROTOCOL_VERSION,
        session: TestRelay::session(),
        token: Some(relay.token(signalbox_proto::Role::Publisher, "x")),
        name: None,
        resume: Some(signalbox_proto::ResumeTicket {
            connection: signalbox_proto::ConnectionId::random(),
            secret: [0; 16],
        }),
        receive_broadcasts: true,
        seen,
    });
    control.write_all(&frame(&hello)).await.unwrap();
    let end = tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
    assert_eq!(
        close_code(&end),
        Some(u64::from(CloseCode::ProtocolError.as_u32()))
    );
}

/// Real QUIC Initial datagrams, each of its own connection attempt (its own connection id),
/// as a client would send them to `relay` — captured, not answered.
async fn captured_initials(relay: &TestRelay, n: usize) -> Vec<Vec<u8>> {
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (endpoint, config) = raw_endpoint(relay);
    let mut attempts = Vec::new();
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut buf = vec![0u8; 2048];
    while out.len() < n {
        attempts.push(
            endpoint
                .connect_with(config.clone(), sink.local_addr().unwrap(), "localhost")
                .unwrap(),
        );
        // Its Initial (earlier attempts' retransmissions are skipped).
        loop {
            let (len, _) = sink.recv_from(&mut buf).await.unwrap();
            // Long header: flags, version (4), then the destination connection id.
            let dcid_len = buf[5] as usize;
            if ids.insert(buf[6..6 + dcid_len].to_vec()) {
                out.push(buf[..len].to_vec());
                break;
            }
        }
    }
    out
}

/// Item 2: thousands of handshakes that stall, from many source addresses, do not keep a
/// real client out: past a few pending handshakes unvalidated sources get a QUIC Retry and
/// hold nothing, and pending connections have a budget apart from joined ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_from_many_sources_does_not_keep_clients_out() {
    use std::time::{Duration, Instant};
    let relay = TestRelay::start_with(|c| c.max_connections = 100).await;
    let initials = captured_initials(&relay, 3000).await;
    let target = relay.handle.quic_addr();
    for (i, datagram) in initials.iter().enumerate() {
        let source = std::net::Ipv4Addr::new(127, 1 + (i / 250) as u8, (i % 250) as u8 + 1, 1);
        let socket = std::net::UdpSocket::bind((source, 0)).unwrap();
        socket.send_to(datagram, target).unwrap();
        if i % 100 == 99 {
            // Paced a little, so the relay's socket buffer takes them all.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The flood is in; a real client joins at once.
    let start = Instant::now();
    let (client, _events) = tokio::time::timeout(
        Duration::from_secs(2),
        signalbox_client::Client::connect(relay.options(signalbox_proto::Role::Publisher, "real")),
    )
    .await
    .expect("joined within 2 s")
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(client.is_connected());
}

/// Item 5: a token acts within its scope only, and errors speak plainly.
#[tokio::test]
async fn tokens_act_within_their_scope_and_errors_are_plain() {
    use signalbox_proto::Role;
    use signalbox_relay::TokenRequest;
    let relay = TestRelay::start_with(|c| c.http = Some("127.0.0.1:0".parse().unwrap())).await;
    let base = format!("http://{}", relay.handle.http_addr().unwrap());
    let (_a, _) = relay.join("a").await;
    let (_o, _) = signalbox_client::Client::connect(
        ConnectOptions::new(
            "127.0.0.1",
            relay.handle.quic_addr().port(),
            SessionId::new("other").unwrap(),
        )
        .with_fingerprint(relay.handle.fingerprint())
        .with_token(relay.token_for("other", Role::Publisher, "o")),
    )
    .await
    .unwrap();
    let server_for = |session: &str| {
        relay
            .handle
            .tokens()
            .mint(&TokenRequest {
                session: session.into(),
                role: Role::Server,
                ..TokenRequest::default()
            })
            .unwrap()
    };
    let http = reqwest::Client::new();
    let get = |path: &str, token: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, list) = get("/v1/sessions", server_for("test")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!([{"id": "test", "connections": 1}]),
        "only its own session"
    );
    let (_, list) = get("/v1/sessions", relay.token(Role::Moderator, "m")).await;
    assert_eq!(list, json!([{"id": "test", "connections": 1}]));
    let (_, all) = get("/v1/sessions", server_for("*")).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    // Metrics cover every session: a server token for all of them only.
    for token in [server_for("test"), relay.token(Role::Moderator, "m")] {
        assert_eq!(get("/metrics", token).await.0, StatusCode::FORBIDDEN);
    }
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth(server_for("*"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A malformed token: a plain sentence, not the JWT library's debug text.
    let (status, body) = get("/v1/sessions", "not.a.token".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let message = body["message"].as_str().unwrap();
    assert_eq!(
        message,
        "the token is malformed (not a token this relay makes)"
    );
    let refused = signalbox_client::Client::connect(
        relay
            .options(Role::Publisher, "x")
            .with_token("eyJhbGciOiJIUzI1NiJ9.e30.x"),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        !refused.contains("Kind") && !refused.contains("Error("),
        "{refused}"
    );
}

/// Item 4: a token is for one relay. Another relay with the same secret refuses it, and a
/// client never shows it to a relay whose certificate is not the token's audience — a
/// look-alike relay on the LAN never sees it.
#[tokio::test]
async fn a_token_is_for_one_relay_and_never_shown_to_another() {
    use signalbox_client::{Client, ConnectError};
    use signalbox_proto::Role;
    let real = TestRelay::start().await;
    let token = real.token(Role::Publisher, "bob");
    let claims = signalbox_proto::token::Claims::peek(&token).unwrap();
    assert_eq!(claims.aud, Some(real.handle.fingerprint().to_string()));
    // A look-alike: the same token secret (say, a copied data directory), its own certificate.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        real.dir.path().join("token-secret"),
        dir.path().join("token-secret"),
    )
    .unwrap();
    let twin = signalbox_relay::Relay::spawn(signalbox_relay::RelayConfig::local(dir.path()))
        .await
        .unwrap();
    let to_twin = ConnectOptions::new("127.0.0.1", twin.quic_addr().port(), TestRelay::session())
        .with_fingerprint(twin.fingerprint());
    // The client does not send it (the twin's certificate is not the audience).
    match Client::connect(to_twin.clone().with_token(token.clone())).await {
        Err(ConnectError::WrongRelay {
            audience, actual, ..
        }) => {
            assert_eq!(audience, real.handle.fingerprint());
            assert_eq!(actual, twin.fingerprint());
        }
        other => panic!("expected WrongRelay, got {:?}", other.map(|_| ())),
    }
    assert_eq!(twin.connection_count(), 0);
    // A client that sends it anyway is refused by the twin.
    let (_, refused) = {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let config =
            signalbox_client::client_config(Some(twin.fingerprint()), twin.quic_addr().ip())
                .unwrap();
        let conn = endpoint
            .connect_with(config, twin.quic_addr(), "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut control, recv) = conn.open_bi().await.unwrap();
        let hello = signalbox_proto::ClientMessage::Hello(signalbox_proto::Hello {
            protocol: signalbox_proto::PROTOCOL_VERSION,
            session: TestRelay::session(),
            token: Some(token.clone()),
            name: None,
            resume: None,
            receive_broadcasts: true,
            seen: vec![],
        });
        control.write_all(&frame(&hello)).await.unwrap();
        let mut frames = tokio_util::codec::FramedRead::new(
            recv,
            signalbox_proto::codec::codec(signalbox_proto::codec::MAX_CONTROL_FRAME),
        );
        let first = futures_util::StreamExt::next(&mut frames)
            .await
            .unwrap()
            .unwrap();
        (
            conn,
            signalbox_proto::codec::decode::<signalbox_proto::RelayMessage>(&first).unwrap(),
        )
    };
    match refused {
        signalbox_proto::RelayMessage::Refused(r) => {
            assert_eq!(r.code, signalbox_proto::RefuseCode::InvalidToken);
            assert!(r.message.contains("another relay"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    twin.shutdown().await;
    // The real relay takes it.
    assert!(
        Client::connect(real.options(Role::Publisher, "x").with_token(token))
            .await
            .is_ok()
    );
}

/// Item 4: one token admits a bounded number of connections at once, and a removed one may
/// not come straight back.
#[tokio::test]
async fn a_token_admits_a_few_and_a_removed_one_stays_out() {
    use signalbox_client::{Client, ConnectError};
    use signalbox_proto::{LeftReason, RefuseCode, Role};
    let relay = TestRelay::start_with(|c| c.max_connections_per_token = 2).await;
    let shared = relay.token(Role::Publisher, "crowd");
    let with = |t: &str| relay.options(Role::Publisher, "x").with_token(t.to_owned());
    let (_one, _) = Client::connect(with(&shared)).await.unwrap();
    let (two, _) = Client::connect(with(&shared)).await.unwrap();
    match Client::connect(with(&shared)).await {
        Err(ConnectError::Refused { code, .. }) => assert_eq!(code, RefuseCode::SessionFull),
        other => panic!("a third connection on one token: {:?}", other.map(|_| ())),
    }
    two.leave().await;
    let (_again, _) = Client::connect(with(&shared)).await.unwrap();

    // A moderator removes bob; bob's token cannot rejoin; another token can.
    let (moderator, mut m_ev) = relay.join_as(Role::Moderator, "mod").await;
    let bob_token = relay.token(Role::Publisher, "bob");
    let (bob, _) = Client::connect(with(&bob_token)).await.unwrap();
    let bob_id = bob.me().id;
    sees_join(&mut m_ev, bob_id).await;
    moderator.kick(bob_id).await.unwrap();
    let reason = expect(&mut m_ev, "bob removed", |e| match e {
        signalbox_client::Event::Left { peer, reason } if peer.id == bob_id => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, LeftReason::ForceDisconnected);
    match Client::connect(with(&bob_token)).await {
        Err(ConnectError::Refused { code, message }) => {
            assert_eq!(code, RefuseCode::InvalidToken);
            assert!(message.contains("removed"), "{message}");
        }
        other => panic!("bob rejoined at once: {:?}", other.map(|_| ())),
    }
    assert!(
        Client::connect(with(&relay.token(Role::Publisher, "bob")))
            .await
            .is_ok()
    );
}

/// Item 5: the HTTP listener holds against slow and numerous clients: a connection that does
/// not finish its headers is closed within the header timeout (5 s); past 256 open
/// connections more are closed at once; real requests go on being answered.
#[tokio::test]
async fn the_http_listener_bounds_slow_and_numerous_clients() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = TestRelay::start_with(|c| c.http = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = relay.handle.http_addr().unwrap();
    // Slowloris: headers a byte at a time, never finished.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        loop {
            if slow.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(8), trickle)
        .await
        .expect("the slow client is cut off");
    assert!(start.elapsed() < Duration::from_secs(8));

    // Hold every slot with idle connections; the next is closed at once.
    let mut idle = Vec::new();
    for _ in 0..256 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The idle ones time out; the API answers again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let body = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("ok"));
    drop(idle);
}

/// A session for a flood: a relay with the rate limits off, `session_held_bytes` as given and
/// receiver bounds far above it (the session's budget, not one receiver's bound, is what is
/// tested), a sender, a client that reads, and a raw client named `raw_name`.
struct Flood {
    relay: TestRelay,
    sender: Client,
    sender_ev: signalbox_client::Events,
    reader: Client,
    reader_ev: signalbox_client::Events,
    raw: Raw,
}

impl Flood {
    async fn start(
        session_held_bytes: usize,
        raw_name: &str,
        configure: impl FnOnce(&mut signalbox_relay::RelayConfig),
    ) -> Self {
        let relay = TestRelay::start_with(|c| {
            c.signals_per_second = 0;
            c.fanout_bytes_per_second = 0;
            c.session_held_bytes = session_held_bytes;
            c.receiver_queue_bytes = 256 << 20;
            c.receiver_queue_signals = 1_000_000;
            configure(c);
        })
        .await;
        let (sender, sender_ev) = relay.join_sender("flood").await;
        let (reader, reader_ev) = relay.join("reader").await;
        let token = relay.token(signalbox_proto::Role::Publisher, raw_name);
        let (raw, _) = Raw::join(&relay, Some(token)).await;
        Self {
            relay,
            sender,
            sender_ev,
            reader,
            reader_ev,
            raw,
        }
    }
}

/// One member floods everyone with 20 000 signals of 8 KiB, its rate limits off. A receiver
/// that reads nothing is closed as a slow consumer once the session's memory budget is spent;
/// the receiver that reads gets every signal, in order, and is never closed, however far the
/// sender outruns it: the relay stops reading the sender while the budget is spent (the
/// relay's socket buffers are large enough that no dropped datagram slows the sender). The
/// bytes the relay holds never pass the budget by more than a few frames (one signal's
/// deliveries, and one per thread charging at that instant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_to_everyone_stays_within_the_memory_budget() {
    use signalbox_client::Signal;
    const N: u64 = 20_000;
    // 32 MiB for queues: the flood (160 MB) is five times that.
    const BUDGET: usize = 64 << 20;
    let Flood {
        relay,
        sender,
        sender_ev: _sender_ev,
        reader: _reader,
        mut reader_ev,
        raw: stalled,
    } = Flood::start(BUDGET, "stalled", |_| {}).await;
    let data = "x".repeat(8192);
    let peak = std::cell::Cell::new((0usize, 0usize));
    let sample = || {
        let (q, r) = relay.handle.held_bytes();
        let (pq, pr) = peak.get();
        peak.set((pq.max(q), pr.max(r)));
    };
    let send = async {
        let mut last = None;
        for _ in 0..N {
            last = Some(sender.send(Signal::to_all("f", &data)).await.unwrap());
            sample();
        }
        last.unwrap().accepted().await.unwrap()
    };
    let receive = async {
        for seq in 1..=N {
            let s = next_signal(&mut reader_ev).await;
            assert_eq!((s.seq, s.data.len()), (seq, 8192));
            sample();
        }
    };
    let (accepted, ()) = tokio::join!(send, receive);
    assert_eq!(accepted, N);
    let gone = tokio::time::timeout(WAIT, stalled.conn.closed())
        .await
        .expect("the receiver that reads nothing is closed");
    assert_eq!(
        close_code(&gone),
        Some(u64::from(signalbox_proto::CloseCode::SlowConsumer.as_u32()))
    );
    // Every frame was delivered, or left the budgets with the closed receiver's queue: none
    // stays charged.
    wait_for("nothing queued", || relay.handle.held_bytes().0 == 0).await;
    let (queued, replay) = peak.get();
    let frame = 8192 + 64 + 32;
    assert!(queued <= BUDGET / 2 + 8 * frame, "queued peak {queued}");
    assert!(replay <= BUDGET / 2, "replay peak {replay}");
    assert!(queued > BUDGET / 4, "the budget was reached: {queued}");
}

/// A receiver that reads, but only a trickle, cannot hold a session's senders back for good:
/// once the session's budget has stayed spent for `write_timeout` while a sender waits, the
/// receiver furthest behind is closed as a slow consumer even though it still takes data now
/// and then, and the flood goes on to everyone else in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_trickles_does_not_hold_the_session_back() {
    use signalbox_client::Signal;
    const N: u64 = 3_000;
    // 2 MiB for queues; the flood is 24 MB.
    let Flood {
        sender,
        sender_ev: _sender_ev,
        reader: _reader,
        mut reader_ev,
        raw: trickler,
        relay: _relay,
    } = Flood::start(4 << 20, "trickler", |c| {
        c.write_timeout = std::time::Duration::from_secs(2)
    })
    .await;
    let conn = trickler.conn.clone();
    // About 640 KB/s: it takes data every 50 ms and never stalls for a whole second.
    let trickle = tokio::spawn(async move {
        let mut stream = conn.accept_uni().await.unwrap();
        let mut buf = vec![0u8; 32 * 1024];
        let mut read = 0usize;
        while let Ok(Some(n)) = stream.read(&mut buf).await {
            read += n;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        read
    });
    let data = "x".repeat(8192);
    let send = async {
        let mut last = None;
        for _ in 0..N {
            last = Some(sender.send(Signal::to_all("f", &data)).await.unwrap());
        }
        last.unwrap().accepted().await.unwrap()
    };
    let receive = async {
        for seq in 1..=N {
            let s = next_signal(&mut reader_ev).await;
            assert_eq!((s.seq, s.data.len()), (seq, 8192));
        }
    };
    // At the trickle's pace the flood would take about 40 s.
    let (accepted, ()) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("the flood is not held to the trickler's pace");
    assert_eq!(accepted, N);
    let gone = tokio::time::timeout(WAIT, trickler.conn.closed())
        .await
        .expect("the trickler is closed");
    assert_eq!(
        close_code(&gone),
        Some(u64::from(signalbox_proto::CloseCode::SlowConsumer.as_u32()))
    );
    let read = trickle.await.unwrap();
    assert!(read > 0, "the trickler did read");
}

/// A member's allowance weighs what its signals cost the relay — bytes times receivers — and
/// leaving and joining again with the same token refills neither bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_weighs_bytes_times_receivers_and_a_reconnect_does_not_refill_it() {
    use signalbox_client::{SendError, Signal};
    use signalbox_proto::{Role, SignalError, Target};
    let relay = TestRelay::start_with(|c| {
        c.signals_per_second = 1;
        c.signal_burst = 1000;
        c.fanout_bytes_per_second = 100_000;
    })
    .await;
    let (r1, _e1) = relay.join("r1").await;
    let (_r2, _e2) = relay.join("r2").await;
    let token = relay.token(Role::Publisher, "loud");
    let loud = || async {
        let options = ConnectOptions::new(
            "127.0.0.1",
            relay.handle.quic_addr().port(),
            TestRelay::session(),
        )
        .with_fingerprint(relay.handle.fingerprint())
        .with_token(token.clone());
        Client::connect(options).await.unwrap()
    };
    let (sender, _ev) = loud().await;
    let data = "x".repeat(8000);
    async fn send(c: &Client, to: Target, data: &str) -> Result<u64, SendError> {
        let signal = match to {
            Target::One(id) => Signal::to_one(id, "t", data),
            _ => Signal::to_all("t", data),
        };
        c.send(signal).await.unwrap().accepted().await
    }
    // To everyone (three receivers, the sender too): about 24 KB each; four fit in 100 KB.
    for _ in 0..4 {
        send(&sender, Target::All, &data).await.unwrap();
    }
    let limited = send(&sender, Target::All, &data).await.unwrap_err();
    assert!(
        matches!(
            limited,
            SendError::Rejected(SignalError::FanoutRateLimited {
                bytes_per_second: 100_000
            })
        ),
        "{limited:?}"
    );
    // The bucket is not refilled by leaving and coming back with the same token.
    sender.leave().await;
    let (again, _ev) = loud().await;
    let still = send(&again, Target::All, &data).await.unwrap_err();
    assert!(
        matches!(
            still,
            SendError::Rejected(SignalError::FanoutRateLimited { .. })
        ),
        "{still:?}"
    );
    // A signal to one receiver costs a third as much: after a third of a second it passes.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let one = Target::One(r1.me().id);
    send(&again, one, &data).await.unwrap();
}

/// A resume is a join: one in another protocol version is refused as a new join would be,
/// even with a good ticket.
#[tokio::test]
async fn a_resume_in_another_protocol_is_refused() {
    use signalbox_proto::{Hello, PROTOCOL_VERSION, RefuseCode, RelayMessage, Role};
    let relay = TestRelay::start().await;
    let (first, _) = Raw::join(&relay, Some(relay.token(Role::Publisher, "ann"))).await;
    let ticket = first.welcome.clone().unwrap().resume;
    let hello = |protocol| Hello {
        protocol,
        session: TestRelay::session(),
        token: None,
        name: None,
        resume: Some(ticket.clone()),
        receive_broadcasts: true,
        seen: vec![],
    };
    let (_, answer) = Raw::join_with(&relay, hello(PROTOCOL_VERSION + 1)).await;
    match answer {
        RelayMessage::Refused(r) => assert_eq!(r.code, RefuseCode::UnsupportedProtocol),
        other => panic!("{other:?}"),
    }
    // The same ticket in the relay's own protocol resumes.
    let (_, answer) = Raw::join_with(&relay, hello(PROTOCOL_VERSION)).await;
    assert!(matches!(answer, RelayMessage::Welcome(_)), "{answer:?}");
}

/// A client that grants its delivery streams credit far ahead of what it reads breaks the
/// rule the relay relies on to let go of what was read (credit only for bytes read, within a
/// 256 KiB window): the relay lets go of frames the client never read, and the client's own
/// resume is told so with `Missed`. Every seq is then either in that notice or replayed, in
/// order: never a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_granting_credit_ahead_of_reading_is_told_what_it_missed() {
    use futures_util::StreamExt;
    use signalbox_client::Signal;
    use signalbox_proto::codec;
    use signalbox_proto::{
        CloseCode, DeliveryHeader, Hello, Incoming, PROTOCOL_VERSION, RelayMessage, Role,
    };
    const N: u64 = 1000;
    let relay = TestRelay::start_with(|c| {
        c.signals_per_second = 0;
        c.fanout_bytes_per_second = 0;
    })
    .await;
    let (sender, mut sender_ev) = relay.join_sender("sender").await;
    // 16 MiB of credit on every stream before it reads a byte; and it reads none.
    let mut greedy = quinn::TransportConfig::default();
    greedy
        .stream_receive_window((16u32 << 20).into())
        .receive_window((64u32 << 20).into());
    let token = || Some(relay.token(Role::Publisher, "greedy"));
    let hello = |resume| Hello {
        protocol: PROTOCOL_VERSION,
        session: TestRelay::session(),
        token: token(),
        name: Some("greedy".into()),
        resume,
        receive_broadcasts: true,
        seen: vec![],
    };
    let (raw, _) = Raw::join_with_transport(&relay, hello(None), Some(greedy)).await;
    let welcome = raw.welcome.clone().expect("welcome");
    // A client refuses a target it has not seen join.
    sees_join(&mut sender_ev, welcome.me.id).await;
    let data = "x".repeat(1000);
    let mut last = None;
    for _ in 0..N {
        let to = Signal::to_one(welcome.me.id, "t", &data);
        last = Some(sender.send(to).await.unwrap());
    }
    last.unwrap().accepted().await.unwrap();
    // The relay lets a frame go at a write after the one that learned of the (claimed) read:
    // a few more, until what it keeps is well under the megabyte sent.
    let mut sent = N;
    while relay.handle.held_bytes().1 > 256 << 10 {
        assert!(
            sent < N + 100,
            "the relay kept {:?}",
            relay.handle.held_bytes()
        );
        let to = Signal::to_one(welcome.me.id, "t", "x");
        sender.send(to).await.unwrap().accepted().await.unwrap();
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Away (not a leave), then back with nothing read.
    raw.conn
        .close(CloseCode::Abandoned.as_u32().into(), b"away");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (mut again, answer) = Raw::join_with(&relay, hello(Some(welcome.resume))).await;
    assert!(matches!(answer, RelayMessage::Welcome(_)), "{answer:?}");
    let (first, last, count) = loop {
        match again.next_control().await.expect("a Missed notice") {
            RelayMessage::Missed {
                from,
                first,
                last,
                count,
            } => {
                assert_eq!(from, Some(sender.me().id));
                break (first, last, count);
            }
            _ => continue,
        }
    };
    assert_eq!(first, 1, "the oldest were let go");
    assert!(count > last - first, "{count} lost of {first}..={last}");
    assert!(
        last > N / 2,
        "most of the megabyte was let go, lost {first}..={last}"
    );
    // The rest, replayed in order from just after the notice.
    let stream = tokio::time::timeout(WAIT, again.conn.accept_uni())
        .await
        .expect("a delivery stream")
        .unwrap();
    let mut frames = tokio_util::codec::FramedRead::new(stream, codec::codec(1 << 20));
    let mut header = None;
    let mut replayed = vec![];
    while replayed.last() != Some(&sent) {
        let frame = tokio::time::timeout(WAIT, frames.next())
            .await
            .expect("the replay")
            .unwrap()
            .unwrap();
        match header {
            None => header = Some(codec::decode::<DeliveryHeader>(&frame).unwrap()),
            Some(_) => replayed.push(codec::decode::<Incoming<'_>>(&frame).unwrap().seq),
        }
    }
    assert_eq!(header.unwrap().from, Some(sender.me().id));
    let want: Vec<u64> = (last + 1..=sent).collect();
    assert_eq!(replayed, want, "every seq after the notice, in order");
}

// ---------------------------------------------------------------------------------------
// Browser links: the same protocol over a WebSocket, and WebTransport on the QUIC port.

mod browser {
    use futures_util::{SinkExt, StreamExt};
    use signalbox_client::{Event, Signal};
    use signalbox_proto::{
        ClientMessage, DeliveryHeader, Hello, Incoming, LeftReason, Outgoing, PROTOCOL_VERSION,
        RelayMessage, Role, Target, codec,
    };
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;

    use super::*;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn web_relay() -> TestRelay {
        TestRelay::start_with(|c| c.http = Some("127.0.0.1:0".parse().unwrap())).await
    }

    async fn ws(relay: &TestRelay) -> Ws {
        let url = format!("ws://{}/v1/ws", relay.handle.http_addr().unwrap());
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// A stream's bytes as a WebSocket message: its id (a varint below 128 here), then them.
    fn tagged(id: u8, bytes: &[u8]) -> Message {
        let mut m = vec![id];
        m.extend_from_slice(bytes);
        Message::Binary(m.into())
    }

    fn hello(relay: &TestRelay) -> Vec<u8> {
        frame(&ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            session: TestRelay::session(),
            token: Some(relay.token(Role::Publisher, "web")),
            name: None,
            resume: None,
            receive_broadcasts: true,
            seen: vec![],
        }))
        .to_vec()
    }

    /// The next binary message: its stream id and the frames in it.
    async fn next(ws: &mut Ws) -> (u8, Vec<Vec<u8>>) {
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Binary(b) = m {
                let (id, mut rest) = (b[0], &b[1..]);
                let mut frames = vec![];
                while rest.len() >= 4 {
                    let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    frames.push(rest[4..4 + n].to_vec());
                    rest = &rest[4 + n..];
                }
                return (id, frames);
            }
        }
    }

    async fn close_code(ws: &mut Ws) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
                Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    }

    /// A browser on the WebSocket link joins, signals a native member and hears from it on a
    /// delivery stream of that sender, and leaves (close 1000) as `clientDisconnected`.
    #[tokio::test]
    async fn a_websocket_link_carries_the_protocol() {
        let relay = web_relay().await;
        let (native, mut events) = relay.join("native").await;
        let mut ws = ws(&relay).await;
        ws.send(tagged(0, &hello(&relay))).await.unwrap();
        let (id, frames) = next(&mut ws).await;
        assert_eq!(id, 0, "the control stream");
        let RelayMessage::Welcome(welcome) = codec::decode(&frames[0]).unwrap() else {
            panic!("no Welcome");
        };
        sees_join(&mut events, welcome.me.id).await;
        let out = Outgoing {
            seq: 1,
            to: Target::All,
            r#type: "chat".into(),
            data: "from a browser".into(),
        };
        ws.send(tagged(1, &frame(&out))).await.unwrap();
        let s = next_signal(&mut events).await;
        assert_eq!((s.from, &*s.data), (Some(welcome.me.id), "from a browser"));

        native
            .send(Signal::to_one(welcome.me.id, "chat", "back"))
            .await
            .unwrap();
        // Delivery streams (its own broadcast came back on one): each starts with its
        // sender's header, then that sender's signals.
        let mut senders = std::collections::HashMap::new();
        let mut got = None;
        while got.is_none() {
            let (id, frames) = next(&mut ws).await;
            if id == 0 {
                continue;
            }
            for f in frames {
                match senders.get(&id) {
                    None => {
                        let header: DeliveryHeader = codec::decode(&f).unwrap();
                        senders.insert(id, header.from);
                    }
                    Some(from) if *from == Some(native.me().id) => {
                        let incoming: Incoming<'_> = codec::decode(&f).unwrap();
                        got = Some(incoming.data.to_string());
                    }
                    Some(_) => {}
                }
            }
        }
        assert_eq!(got.as_deref(), Some("back"));

        ws.close(Some(CloseFrame {
            code: WsCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
        let reason = expect(&mut events, "the browser leaving", |e| match e {
            Event::Left { peer, reason } if peer.id == welcome.me.id => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, LeftReason::ClientDisconnected);
    }

    /// What a hostile page sends on the WebSocket link closes it as a protocol error (4001):
    /// text, a stream a client may not open, a bad stream id, data after its stream ended.
    #[tokio::test]
    async fn a_websocket_link_takes_the_protocol_and_nothing_else() {
        let relay = web_relay().await;
        let bad: Vec<Vec<Message>> = vec![
            vec![Message::Text("hello".into())],
            vec![tagged(2, b"\0\0\0\x01\x02")],
            vec![Message::Binary(vec![0x80].into())],
            vec![tagged(0, &hello(&relay)), tagged(1, b""), tagged(1, b"\0")],
            vec![tagged(0, b"\0\0\0\x03not")],
        ];
        for messages in bad {
            let mut ws = ws(&relay).await;
            for m in messages.clone() {
                ws.send(m).await.unwrap();
            }
            assert_eq!(close_code(&mut ws).await, 4001, "{messages:?}");
        }
        // A link that sends nothing is closed after the hello timeout (4006).
        let mut idle = ws(&relay).await;
        assert_eq!(close_code(&mut idle).await, 4006);
    }

    /// A WebSocket that goes silent (a phone off the Wi-Fi, its TCP still "open") is ended
    /// after the idle timeout as a network failure — away, then gone — while one that answers
    /// the relay's pings stays.
    #[tokio::test]
    async fn a_silent_websocket_is_gone_after_the_idle_timeout() {
        use std::time::Duration;
        let relay = TestRelay::start_with(|c| {
            c.http = Some("127.0.0.1:0".parse().unwrap());
            c.keep_alive = Duration::from_millis(100);
            c.idle_timeout = Duration::from_millis(600);
            c.resume_grace = Duration::from_millis(300);
        })
        .await;
        let (native, mut events) = relay.join("native").await;
        let mut joined = vec![];
        let mut sockets = vec![];
        for _ in 0..2 {
            let mut ws = ws(&relay).await;
            ws.send(tagged(0, &hello(&relay))).await.unwrap();
            let (_, frames) = next(&mut ws).await;
            let RelayMessage::Welcome(w) = codec::decode(&frames[0]).unwrap() else {
                panic!("no Welcome");
            };
            sees_join(&mut events, w.me.id).await;
            joined.push(w.me.id);
            sockets.push(ws);
        }
        let silent = sockets.pop().unwrap();
        let mut alive = sockets.pop().unwrap();
        // Reading answers the relay's pings (tungstenite pongs by itself); the other socket
        // is never read again.
        let keeper = tokio::spawn(async move { while let Some(Ok(_)) = alive.next().await {} });
        let (gone, reason) = expect(&mut events, "the silent browser to go", |e| match e {
            Event::Left { peer, reason } => Some((peer.id, reason)),
            _ => None,
        })
        .await;
        assert_eq!((gone, reason), (joined[1], LeftReason::NetworkDisconnected));
        // Three idle timeouts on, the one that answers is still there.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        native
            .send(Signal::to_one(joined[0], "still", "there"))
            .await
            .unwrap()
            .accepted()
            .await
            .unwrap();
        drop(silent);
        keeper.abort();
    }

    /// A native client opens one control stream and one send stream; another is a protocol
    /// error, not buffers the relay holds unread.
    #[tokio::test]
    async fn a_native_client_may_not_open_more_streams() {
        let relay = TestRelay::start().await;
        let (raw, _) = Raw::join(&relay, Some(relay.token(Role::Publisher, "raw"))).await;
        let mut send = raw.open_send().await;
        let out = Outgoing {
            seq: 1,
            to: Target::All,
            r#type: "".into(),
            data: "".into(),
        };
        send.write_all(&frame(&out)).await.unwrap();
        let mut extra = raw.open_send().await;
        extra.write_all(&[0; 64]).await.unwrap();
        let err = tokio::time::timeout(WAIT, raw.conn.closed()).await.unwrap();
        match err {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code.into_inner(), 1, "{c:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// What the HTTP listener publishes for WebTransport, and the certificate hash in it.
    async fn published(relay: &TestRelay) -> (serde_json::Value, Vec<u8>) {
        use base64::Engine;
        let info: serde_json::Value = reqwest::get(format!(
            "http://{}/v1/webtransport",
            relay.handle.http_addr().unwrap()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let hash = base64::engine::general_purpose::STANDARD
            .decode(
                info["serverCertificateHashes"][0]["value"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        (info, hash)
    }

    /// A WebTransport session as a page opens one (on `port`, trusting the certificate
    /// `hash`): its control stream after `hello`, and the `Welcome` read from it.
    async fn open_webtransport(
        port: u16,
        hash: Vec<u8>,
        hello: Vec<u8>,
    ) -> (
        web_transport_quinn::Session,
        web_transport_quinn::SendStream,
        tokio_util::codec::FramedRead<
            web_transport_quinn::RecvStream,
            tokio_util::codec::LengthDelimitedCodec,
        >,
        signalbox_proto::Welcome,
    ) {
        let url = url::Url::parse(&format!("https://127.0.0.1:{port}/v1/wt")).unwrap();
        let session = web_transport_quinn::ClientBuilder::new()
            .with_server_certificate_hashes(vec![hash])
            .unwrap()
            .connect(url)
            .await
            .unwrap();
        let (mut send, recv) = session.open_bi().await.unwrap();
        send.write_all(&hello).await.unwrap();
        let mut frames = tokio_util::codec::FramedRead::new(recv, codec::codec(1 << 20));
        let first = frames.next().await.unwrap().unwrap();
        let welcome = match codec::decode::<RelayMessage>(&first).unwrap() {
            RelayMessage::Welcome(w) => w,
            other => panic!("{other:?}"),
        };
        (session, send, frames, welcome)
    }

    /// A member removed by a moderator over WebTransport is told why (`Closing`, the last
    /// control message) before its connection closes: a browser reports the close itself as
    /// "Connection lost", with no code. A page that then closes the session ends it at once;
    /// one that does not is closed by the relay within a second or so.
    #[tokio::test]
    async fn a_webtransport_member_removed_is_told_why_before_the_close() {
        let relay = web_relay().await;
        let (_, hash) = published(&relay).await;
        let (moderator, _m_ev) = relay.join_as(Role::Moderator, "mod").await;
        let port = relay.handle.quic_addr().port();
        for page_closes in [true, false] {
            let (session, _send, mut frames, welcome) =
                open_webtransport(port, hash.clone(), hello(&relay)).await;
            moderator.kick(welcome.me.id).await.unwrap();
            let last = tokio::time::timeout(WAIT, async {
                let mut last = None;
                while let Some(Ok(f)) = frames.next().await {
                    last = Some(codec::decode::<RelayMessage>(&f).unwrap());
                    if page_closes && matches!(last, Some(RelayMessage::Closing { .. })) {
                        session.close(3, b"told");
                    }
                }
                last
            })
            .await
            .expect("the control stream ends");
            match last {
                Some(RelayMessage::Closing { code, .. }) => {
                    assert_eq!(code, signalbox_proto::CloseCode::Kicked.as_u32());
                }
                other => panic!("the last control message was {other:?}"),
            }
            tokio::time::timeout(std::time::Duration::from_secs(3), session.closed())
                .await
                .expect("the connection closes");
        }
    }

    /// A browser that resumes on a new WebTransport session gets the member's control
    /// messages there at once. The session it left, which it no longer reads, stops taking
    /// them when the resume comes — not when WebTransport's goodbye on it is over, which waits
    /// 100 ms or more for a browser that never answers. (Taken by the old session, a
    /// `Joined`, an `Accepted` or a `Rejected` was lost: a page could wait for ever for a
    /// signal's answer.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_webtransport_resume_gets_the_members_messages_at_once() {
        use signalbox_relay::test_utils::faulty::{Faults, FaultyLink};
        let relay = web_relay().await;
        let (_, hash) = published(&relay).await;
        let open = |port: u16, hello: Vec<u8>| open_webtransport(port, hash.clone(), hello);
        // The first session goes through a path that then goes silent, as a browser's does
        // when the network drops: the relay's goodbye on it is never answered.
        let path = FaultyLink::start(relay.handle.quic_addr(), 5, Faults::default()).await;
        let (_old, _old_send, _old_frames, welcome) = open(path.addr().port(), hello(&relay)).await;
        path.blackhole(true);
        let resume = frame(&ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            session: TestRelay::session(),
            token: None,
            name: None,
            resume: Some(welcome.resume.clone()),
            receive_broadcasts: true,
            seen: vec![],
        }))
        .to_vec();
        let (resumed, _resumed_send, mut frames, again) =
            open(relay.handle.quic_addr().port(), resume).await;
        assert_eq!(again.me.id, welcome.me.id, "resumed");
        // A signal the relay refuses, right after: the resumed session is told.
        let mut send = resumed.open_uni().await.unwrap();
        send.write_all(&refused(1)).await.unwrap();
        let told = tokio::time::timeout(WAIT, async {
            loop {
                let f = frames.next().await.unwrap().unwrap();
                if let RelayMessage::Rejected { seq, .. } = codec::decode(&f).unwrap() {
                    break seq;
                }
            }
        })
        .await
        .expect("the resumed session is told of the refusal");
        assert_eq!(told, 1);
    }

    /// A signal the relay refuses (its type has a space), as a frame.
    fn refused(seq: u64) -> Vec<u8> {
        frame(&Outgoing {
            seq,
            to: Target::All,
            r#type: "no spaces".into(),
            data: "".into(),
        })
        .to_vec()
    }

    /// The control messages on a WebSocket until an `Accepted`, as words, and the `Welcome`
    /// among them.
    async fn answers(ws: &mut Ws) -> (Vec<String>, Option<signalbox_proto::Welcome>) {
        let (mut told, mut welcome) = (vec![], None);
        loop {
            let (id, frames) = next(ws).await;
            if id != 0 {
                continue;
            }
            for f in frames {
                match codec::decode::<RelayMessage>(&f).unwrap() {
                    RelayMessage::Welcome(w) => {
                        told.push("welcome".to_owned());
                        welcome = Some(w);
                    }
                    RelayMessage::Rejected { seq, .. } => told.push(format!("rejected {seq}")),
                    RelayMessage::Accepted { up_to } => {
                        told.push(format!("accepted {up_to}"));
                        return (told, welcome);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A browser that resumes on a new WebSocket while the relay still has its old one open
    /// (its client stopped reading it) is told on the new one what is due: the refusal sent
    /// to the old socket again, before the `Accepted` that covers it, and the answers to what
    /// it sends next. The old socket's writer takes nothing once the member has moved on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_websocket_resume_gets_its_answers_while_the_old_socket_is_open() {
        let relay = web_relay().await;
        let mut old = ws(&relay).await;
        old.send(tagged(0, &hello(&relay))).await.unwrap();
        old.send(tagged(1, &refused(1))).await.unwrap();
        let (told, welcome) = answers(&mut old).await;
        assert_eq!(told, ["welcome", "rejected 1", "accepted 1"]);
        let resume = frame(&ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            session: TestRelay::session(),
            token: None,
            name: None,
            resume: Some(welcome.unwrap().resume),
            receive_broadcasts: true,
            seen: vec![],
        }))
        .to_vec();
        for round in 0..20 {
            // The old socket stays open at the relay; the page resumes on a new one.
            let mut new = ws(&relay).await;
            new.send(tagged(0, &resume)).await.unwrap();
            let (told, _) = answers(&mut new).await;
            let last = round + 1;
            let mut want = vec!["welcome".to_owned()];
            want.extend((1..=last).map(|seq| format!("rejected {seq}")));
            want.push(format!("accepted {last}"));
            assert_eq!(told, want, "round {round}");
            // What it sends now is answered there.
            new.send(tagged(1, &refused(last + 1))).await.unwrap();
            let (told, _) = answers(&mut new).await;
            assert_eq!(
                told,
                [
                    format!("rejected {}", last + 1),
                    format!("accepted {}", last + 1)
                ]
            );
            // And it goes quiet in turn: the next round resumes while this one is open.
            old = new;
        }
        drop(old);
    }

    /// A browser's WebTransport handshake gets the short-lived certificate whose hash the
    /// HTTP listener publishes (a native client still gets the pinned identity); only
    /// `/v1/wt` is served.
    #[tokio::test]
    async fn webtransport_uses_the_published_certificate_hash() {
        let relay = web_relay().await;
        let (info, hash) = published(&relay).await;
        assert_eq!(info["port"], relay.handle.quic_addr().port());
        assert_eq!(info["path"], "/v1/wt");
        let wt = |hashes: Vec<Vec<u8>>| {
            web_transport_quinn::ClientBuilder::new()
                .with_server_certificate_hashes(hashes)
                .unwrap()
        };
        let at = |path: &str| {
            url::Url::parse(&format!(
                "https://127.0.0.1:{}{path}",
                relay.handle.quic_addr().port()
            ))
            .unwrap()
        };
        // The published hash opens a session that speaks the protocol.
        let session = wt(vec![hash.clone()]).connect(at("/v1/wt")).await.unwrap();
        let (mut send, recv) = session.open_bi().await.unwrap();
        send.write_all(&hello(&relay)).await.unwrap();
        let mut frames = tokio_util::codec::FramedRead::new(recv, codec::codec(1 << 20));
        let first = frames.next().await.unwrap().unwrap();
        assert!(matches!(
            codec::decode::<RelayMessage>(&first).unwrap(),
            RelayMessage::Welcome(_)
        ));
        // Another hash is refused: the certificate is the one published.
        assert!(wt(vec![vec![0; 32]]).connect(at("/v1/wt")).await.is_err());
        // Another path is not served.
        assert!(wt(vec![hash]).connect(at("/elsewhere")).await.is_err());
    }
}
