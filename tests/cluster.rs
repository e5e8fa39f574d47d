//! Several relay nodes sharing sessions through a real `nats-server` on a free loopback
//! port: cross-node broadcast and targeted delivery, per-sender order, presence across nodes,
//! REST on any node, a node that dies, and NATS going away and coming back; and random
//! schedules of all of it with forged cluster messages among them, checked for order, loss
//! and forgery at every member that stays.
//!
//! Needs `nats-server` (Debian package `nats-server`; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::local::{Proc, relay_cmd};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_client::{Client, ConnectOptions, Event, Events, Signal};
use signalbox_proto::{ConnectionId, ConnectionInfo, LeftReason, Role, Target};

/// A `nats-server` on 127.0.0.1, killed when dropped.
struct Nats {
    child: Option<Child>,
    port: u16,
    /// Arguments beyond the address and port (TLS, a user).
    extra: Vec<String>,
}

fn nats_binary() -> std::path::PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = std::path::Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("nats-server is not installed: apt-get install nats-server (.ci/run installs it)");
}

impl Nats {
    fn start() -> Self {
        Self::start_with(Vec::new())
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut n = Self {
            child: None,
            port: free_tcp_port(),
            extra,
        };
        n.restart();
        n
    }

    /// (Re)starts it on its port and waits until it takes connections.
    fn restart(&mut self) {
        let child = Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token secret the test nodes share: the key that seals cluster messages derives
/// from it.
const SECRET: &[u8] = b"the-cluster-tests-share-this-secret-0123456789";

/// Gives a node's data directory `secret` (before it starts).
fn share_secret(data_dir: &std::path::Path, secret: &[u8]) {
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(data_dir.join("token-secret"), secret).unwrap();
}

/// A relay node of the cluster at `nats`, with its REST API on.
async fn node(nats: &Nats, name: &str) -> TestRelay {
    node_with(nats, name, |_| {}).await
}

async fn node_with(
    nats: &Nats,
    name: &str,
    tune: impl FnOnce(&mut signalbox_relay::RelayConfig),
) -> TestRelay {
    let url = nats.url();
    let name = name.to_owned();
    TestRelay::start_with(move |c| {
        share_secret(c.data_dir.as_ref().unwrap(), SECRET);
        c.cluster = Some(url);
        c.node_name = Some(name);
        c.signals_per_second = 0;
        c.http = Some("127.0.0.1:0".parse().unwrap());
        tune(c);
    })
    .await
}

/// Nodes "a", "b" and "c" on `nats`, once they all see each other.
async fn three_nodes(nats: &Nats) -> (TestRelay, TestRelay, TestRelay) {
    let (a, b, c) = (
        node(nats, "a").await,
        node(nats, "b").await,
        node(nats, "c").await,
    );
    formed(&[&a, &b, &c]).await;
    (a, b, c)
}

/// Waits until every node sees all the others.
async fn formed(nodes: &[&TestRelay]) {
    wait_for("the cluster to form", || {
        nodes.iter().all(|n| {
            n.handle
                .cluster_status()
                .is_some_and(|s| s.connected && s.nodes.len() == nodes.len() - 1)
        })
    })
    .await;
}

/// Waits until every node sees `n` members in the test session.
async fn members(nodes: &[&TestRelay], n: usize) {
    wait_for("presence to spread", || {
        nodes
            .iter()
            .all(|r| r.handle.members(&TestRelay::session()).len() == n)
    })
    .await;
}

async fn next_left(events: &mut Events, who: ConnectionId) -> LeftReason {
    expect(events, "a Left", |e| match e {
        Event::Left { peer, reason } if peer.id == who => Some(reason),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_presence_cross_nodes_and_rest_works_on_any_node() {
    let nats = Nats::start();
    let (a, b, c) = three_nodes(&nats).await;

    let (a1, mut a1_ev) = a.join("a1").await;
    let (b1, mut b1_ev) = b.join("b1").await;
    members(&[&a, &b, &c], 2).await;
    // The snapshot a newcomer gets lists members on every node.
    let (c1, mut c1_ev) = c.join("c1").await;
    let peers: Vec<ConnectionId> = c1.peers().iter().map(|p| p.id).collect();
    assert!(
        peers.contains(&a1.me().id) && peers.contains(&b1.me().id),
        "{peers:?}"
    );
    // …and its arrival reaches the other nodes' members.
    let c1_id = c1.me().id;
    for ev in [&mut a1_ev, &mut b1_ev] {
        expect(ev, "c1 joined", |e| match e {
            Event::Joined(p) if p.id == c1_id => Some(()),
            _ => None,
        })
        .await;
    }

    // Broadcast from A reaches B and C (and A), stamped with the sender.
    a1.send(Signal::to_all("chat", "hi all"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    for ev in [&mut a1_ev, &mut b1_ev, &mut c1_ev] {
        let s = next_signal(ev).await;
        assert_eq!(
            (s.from, &*s.data, s.to_all),
            (Some(a1.me().id), "hi all", true)
        );
    }
    // One target on another node: only it.
    a1.send(Signal::to_one(c1.me().id, "dm", "psst"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    let s = next_signal(&mut c1_ev).await;
    assert_eq!((&*s.data, s.to_all), ("psst", false));
    // A list across two other nodes.
    b1.send(Signal {
        to: Target::List(vec![a1.me().id, c1.me().id]),
        r#type: "t".into(),
        data: "to you two".into(),
    })
    .await
    .unwrap()
    .accepted()
    .await
    .unwrap();
    assert_eq!(next_signal(&mut a1_ev).await.data, "to you two");
    assert_eq!(next_signal(&mut c1_ev).await.data, "to you two");
    no_signal(&mut b1_ev, Duration::from_millis(300)).await;
    // An id nobody has is still 404.
    let err = a1
        .send(Signal::to_one(ConnectionId::random(), "t", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 404);

    // REST on node B acts on the whole session.
    let http = reqwest::Client::new();
    let base = format!("http://{}", b.handle.http_addr().unwrap());
    let token = b.server_token();
    let listed: Vec<Value> = http
        .get(format!("{base}/v1/sessions/test/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let r = http
        .post(format!("{base}/v1/sessions/test/signal"))
        .bearer_auth(&token)
        .json(&json!({"type": "notice", "data": "from the server"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for ev in [&mut a1_ev, &mut b1_ev, &mut c1_ev] {
        let s = next_signal(ev).await;
        assert_eq!((s.from, &*s.data), (None, "from the server"));
    }
    let r = http
        .post(format!(
            "{base}/v1/sessions/test/connections/{}/signal",
            c1.me().id
        ))
        .bearer_auth(&token)
        .json(&json!({"type": "notice", "data": "just c1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(next_signal(&mut c1_ev).await.data, "just c1");
    // Removing a member served by node A, through node B.
    let r = http
        .delete(format!(
            "{base}/v1/sessions/test/connections/{}",
            a1.me().id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let gone = expect(&mut a1_ev, "a1 removed", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(gone, LeftReason::ForceDisconnected);
    assert_eq!(
        next_left(&mut c1_ev, a1.me().id).await,
        LeftReason::ForceDisconnected
    );
    // A plain leave reaches the other nodes with its reason.
    c1.leave().await;
    assert_eq!(
        next_left(&mut b1_ev, c1.me().id).await,
        LeftReason::ClientDisconnected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_on_two_nodes_keep_their_order_at_a_third() {
    let nats = Nats::start();
    let (a, b, c) = three_nodes(&nats).await;
    let (_r1, mut r1_ev) = c.join("r1").await;
    let (_r2, mut r2_ev) = a.join("r2").await;
    let (s1, _) = a.join("s1").await;
    let (s2, _) = b.join("s2").await;
    members(&[&a, &b, &c], 4).await;
    const N: u64 = 2000;
    tokio::join!(
        send_many(&s1, "n", N, |i| i.to_string()),
        send_many(&s2, "n", N, |i| i.to_string())
    );
    for ev in [&mut r1_ev, &mut r2_ev] {
        let mut next: HashMap<ConnectionId, u64> = HashMap::new();
        for s in signals(ev, 2 * N as usize).await {
            let Some(from) = s.from else { continue };
            let n: u64 = s.data.parse().unwrap();
            let want = next.entry(from).or_insert(1);
            assert_eq!(n, *want, "per-sender order from {from}");
            *want += 1;
        }
        assert_eq!(next.get(&s1.me().id), Some(&(N + 1)));
        assert_eq!(next.get(&s2.me().id), Some(&(N + 1)));
    }
}

/// Runs `signalbox relay` as a separate process (so it can die abruptly), open, on loopback.
fn relay_process(nats: &Nats, home: &std::path::Path, name: &str) -> (Proc, String) {
    share_secret(&home.join("data"), SECRET);
    let mut cmd = relay_cmd(home);
    cmd.args(["--open", "--cluster"])
        .arg(nats.url())
        .args(["--node-name", name, "--session", "test"])
        .stderr(Stdio::null());
    let relay = Proc::spawn(cmd);
    let invite = loop {
        if let Some(i) = relay.line().strip_prefix("moderator invite: ") {
            break i.replace("//0.0.0.0:", "//127.0.0.1:");
        }
    };
    (relay, invite)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_has_its_members_leave_elsewhere_and_one_that_returns_rejoins() {
    let nats = Nats::start();
    let b = node(&nats, "b").await;
    let (observer, mut obs_ev) = b.join("observer").await;
    let home = tempfile::tempdir().unwrap();
    let (mut a, invite) = relay_process(&nats, home.path(), "a");
    let mut options: ConnectOptions = invite.parse().unwrap();
    options.name = Some("on-a".into());
    options.reconnect = false;
    // Notices a dead relay within seconds.
    options.idle_timeout = Duration::from_secs(2);
    options.keep_alive = Duration::from_millis(500);
    let (on_a, mut on_a_ev) = Client::connect(options.clone()).await.unwrap();
    let joined = expect(&mut obs_ev, "on-a joined", |e| match e {
        Event::Joined(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(joined.id, on_a.me().id);
    // on-a sees the observer on node B in its snapshot, or as it arrives.
    if !on_a.peers().iter().any(|p| p.id == observer.me().id) {
        wait_for("on-a to see the observer", || {
            on_a.peers().iter().any(|p| p.id == observer.me().id)
        })
        .await;
    }
    // Node A dies without a word.
    a.kill();
    assert_eq!(
        next_left(&mut obs_ev, on_a.me().id).await,
        LeftReason::NetworkDisconnected
    );
    let _ = expect(&mut on_a_ev, "on-a to lose its relay", |e| match e {
        Event::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await;
    // It comes back (same data dir): a new node, and its members are seen again.
    let (_a2, invite) = relay_process(&nats, home.path(), "a");
    let mut options: ConnectOptions = invite.parse().unwrap();
    options.name = Some("back".into());
    let (back, _back_ev) = Client::connect(options).await.unwrap();
    let joined = expect(&mut obs_ev, "back joined", |e| match e {
        Event::Joined(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(joined.id, back.me().id);
    observer
        .send(Signal::to_one(back.me().id, "t", "welcome back"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_nodes_serve_their_own_members_and_heal_when_it_returns() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    formed(&[&a, &b]).await;
    let (a1, mut a1_ev) = a.join("a1").await;
    let (_a2, mut a2_ev) = a.join("a2").await;
    let (b1, mut b1_ev) = b.join("b1").await;
    members(&[&a, &b], 3).await;

    nats.stop();
    wait_for("node A to report degraded", || {
        a.handle.cluster_status().is_some_and(|s| !s.connected)
    })
    .await;
    let health = reqwest::get(format!("http://{}/healthz", a.handle.http_addr().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("degraded"), "{health}");
    let text = metrics(&a).await;
    assert!(text.contains("signalbox_cluster_connected 0"), "{text}");
    // Local delivery never stops.
    for i in 0..20 {
        a1.send(Signal::to_all("local", i.to_string()))
            .await
            .unwrap()
            .accepted()
            .await
            .unwrap();
        assert_eq!(next_signal(&mut a2_ev).await.data, i.to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    nats.restart();
    formed(&[&a, &b]).await;
    members(&[&a, &b], 3).await;
    // Cross-node delivery resumes.
    let deadline = Instant::now() + WAIT;
    loop {
        a1.send(Signal::to_all("again", "over NATS"))
            .await
            .unwrap()
            .accepted()
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if let Some(Event::Signal(s)) = b1_ev.next().await
                    && s.r#type == "again"
                {
                    return s;
                }
            }
        })
        .await;
        if let Ok(s) = got {
            assert_eq!(s.from, Some(a1.me().id));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume"
        );
    }
    b1.send(Signal::to_one(a1.me().id, "t", "and back"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    let s = expect(&mut a1_ev, "b1's signal", |e| match e {
        Event::Signal(s) if s.r#type == "t" => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(s.data, "and back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_counts_every_node() {
    let nats = Nats::start();
    let limit = |c: &mut signalbox_relay::RelayConfig| c.max_connections_per_session = 2;
    let (a, b) = (
        node_with(&nats, "a", limit).await,
        node_with(&nats, "b", limit).await,
    );
    formed(&[&a, &b]).await;
    let (_a1, _) = a.join("a1").await;
    let (_b1, _) = b.join("b1").await;
    members(&[&a, &b], 2).await;
    // Two members in all: a third is refused on either node.
    let err = Client::connect(a.options(Role::Publisher, "a2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    let err = Client::connect(b.options(Role::Publisher, "b2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
}

/// Nodes that share the token secret share the tokens' audience (the cluster's id, not a
/// node's certificate): a token made by one node joins any node, and no relay outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_by_one_node_is_good_on_every_node() {
    let nats = Nats::start();
    let a = node(&nats, "a").await;
    let secret = std::fs::read(a.dir.path().join("token-secret")).unwrap();
    let shared = secret.clone();
    let b = node_with(&nats, "b", move |c| {
        let dir = c.data_dir.clone().unwrap();
        std::fs::write(dir.join("token-secret"), &shared).unwrap();
    })
    .await;
    let token = a.token(Role::Publisher, "ann");
    let aud = signalbox_proto::token::Claims::peek(&token)
        .unwrap()
        .aud
        .unwrap();
    assert!(aud.starts_with("cluster:"), "{aud}");
    let to_b = ConnectOptions::new(
        "127.0.0.1",
        b.handle.quic_addr().port(),
        TestRelay::session(),
    )
    .with_fingerprint(b.handle.fingerprint())
    .with_token(token.clone());
    let (ann, _) = Client::connect(to_b).await.unwrap();
    assert_eq!(ann.me().name, "ann");
    // A lone relay with the same secret is not the cluster: it refuses the token.
    let lone = TestRelay::start_with(move |c| {
        let dir = c.data_dir.clone().unwrap();
        std::fs::write(dir.join("token-secret"), &secret).unwrap();
    })
    .await;
    let to_lone = ConnectOptions::new(
        "127.0.0.1",
        lone.handle.quic_addr().port(),
        TestRelay::session(),
    )
    .with_fingerprint(lone.handle.fingerprint())
    .with_token(token);
    assert!(Client::connect(to_lone).await.is_err());
}

/// Whether a NATS message's payload holds `needle` (the tests look into envelopes only to
/// find one they sent).
fn holds(payload: &[u8], needle: &[u8]) -> bool {
    payload.windows(needle.len()).any(|w| w == needle)
}

/// A node's `/metrics` text (with a server token).
async fn metrics(node: &TestRelay) -> String {
    reqwest::Client::new()
        .get(format!(
            "http://{}/metrics",
            node.handle.http_addr().unwrap()
        ))
        .bearer_auth(node.server_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn refused_count(node: &TestRelay) -> u64 {
    let text = metrics(node).await;
    assert!(
        text.contains("signalbox_cluster_refused_messages"),
        "{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("signalbox_cluster_refused_messages "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A NATS user who can publish on every subject but has no cluster key — and a rogue node
/// that has it — try to inject, forge, replay and kick. Node B delivers none of it, and
/// counts every refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_foreign_cluster_messages_are_refused() {
    use futures_util::StreamExt;
    use signalbox_relay::cluster_forge::{Forged, frame, payload};
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    formed(&[&a, &b]).await;
    let (ann, _ann_ev) = a.join("ann").await;
    let (bob, mut bob_ev) = b.join("bob").await;
    members(&[&a, &b], 2).await;
    let ann_id = ann.me().id;
    let spy = async_nats::connect(nats.url()).await.unwrap();
    let subject = "signalbox.s.test";
    let mut seen = spy.subscribe(subject).await.unwrap();
    spy.flush().await.unwrap();

    ann.send(Signal::to_all("chat", "genuine"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    assert_eq!(next_signal(&mut bob_ev).await.data, "genuine");
    let real = loop {
        let m = seen.next().await.unwrap();
        if holds(&m.payload, b"genuine") {
            break m.payload;
        }
    };
    let before = refused_count(&b).await;

    let publish = |subject: &str, bytes: bytes::Bytes| {
        let spy = spy.clone();
        let subject = subject.to_owned();
        async move { spy.publish(subject, bytes).await.unwrap() }
    };
    // Without the key: the real envelope again (a replay), with one byte of its data
    // changed, unsealed, and sealed with another secret.
    publish(subject, real.clone()).await;
    let mut changed = real.to_vec();
    let at = changed.windows(7).position(|w| w == b"genuine").unwrap();
    changed[at] = b'G';
    publish(subject, changed.into()).await;
    let forged = |seq: u64| Forged::Signal {
        from: ann_id,
        seq,
        to: Target::All,
        frame: frame(seq, true, "chat", "forged"),
    };
    publish(subject, payload(None, subject, "mallory", 1, forged(100))).await;
    let wrong: &[u8] = b"not-the-cluster-secret-but-long-enough-0123";
    publish(
        subject,
        payload(Some(wrong), subject, "mallory", 1, forged(101)),
    )
    .await;
    // With the key, from a node that does not have ann: claim ann, speak as ann, kick bob.
    let joined = |v: u64, info: ConnectionInfo| Forged::Joined {
        v,
        session: TestRelay::session(),
        info,
    };
    let mut ann_info = ann.me().clone();
    ann_info.name = "not ann".into();
    publish(
        subject,
        payload(Some(SECRET), subject, "rogue", 1, joined(1, ann_info)),
    )
    .await;
    publish(
        subject,
        payload(Some(SECRET), subject, "rogue", 2, forged(102)),
    )
    .await;
    let kick = Forged::Kick {
        session: TestRelay::session(),
        id: bob.me().id,
    };
    // (B's node id is not public; a kick to a made-up node subject reaches nobody, and one
    // on the session subject is the wrong subject.)
    publish(subject, payload(Some(SECRET), subject, "rogue", 3, kick)).await;
    // Its own member, with frames that break the rules: a bad type, data over the limit, a
    // seq that is not the envelope's, a target list with a repeat.
    let mallory = ConnectionInfo {
        id: ConnectionId::random(),
        name: "mallory".into(),
        role: Role::Publisher,
        data: String::new(),
        joined_at: 1,
    };
    let mid = mallory.id;
    publish(
        subject,
        payload(Some(SECRET), subject, "rogue", 4, joined(2, mallory)),
    )
    .await;
    let bad = |n: u64, seq: u64, to: Target, frame: Vec<u8>| {
        payload(
            Some(SECRET),
            subject,
            "rogue",
            n,
            Forged::Signal {
                from: mid,
                seq,
                to,
                frame,
            },
        )
    };
    publish(
        subject,
        bad(5, 1, Target::All, frame(1, true, "bad type", "")),
    )
    .await;
    let big = "d".repeat(70_000);
    publish(subject, bad(6, 2, Target::All, frame(2, true, "t", &big))).await;
    publish(subject, bad(7, 3, Target::All, frame(4, true, "t", "seq"))).await;
    let bob_twice = Target::List(vec![bob.me().id, bob.me().id]);
    publish(subject, bad(8, 5, bob_twice, frame(5, false, "t", "twice"))).await;
    // …and one good one, then the same envelope number again (a replay).
    publish(
        subject,
        bad(9, 6, Target::All, frame(6, true, "t", "from-rogue")),
    )
    .await;
    publish(
        subject,
        bad(9, 7, Target::All, frame(7, true, "t", "replayed")),
    )
    .await;
    spy.flush().await.unwrap();

    // The only signals bob gets: the rogue node's one valid signal (a node with the key is a
    // node of the cluster) and ann's next real one (two senders: in either order).
    ann.send(Signal::to_all("chat", "after"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    let mut got: Vec<(Option<ConnectionId>, String)> = signals(&mut bob_ev, 2)
        .await
        .into_iter()
        .map(|s| (s.from, s.data.to_string()))
        .collect();
    got.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        got,
        vec![
            (Some(ann_id), "after".to_owned()),
            (Some(mid), "from-rogue".to_owned()),
        ]
    );
    no_signal(&mut bob_ev, Duration::from_millis(300)).await;
    assert!(bob.is_connected(), "bob was not kicked");
    // Ann is still ann, on node A, everywhere.
    let on_b = b.handle.members(&TestRelay::session());
    let ann_on_b = on_b.iter().find(|m| m.id == ann_id).unwrap();
    assert_eq!(ann_on_b.name, "ann");
    // A node with the key cannot grow another node's memory without bound: a heartbeat
    // claiming 4000 members of one session keeps at most a session's worth (3000), and a
    // hundred made-up nodes at most 64.
    let crowd: Vec<(signalbox_proto::SessionId, ConnectionInfo)> = (0..4000)
        .map(|i| {
            let info = ConnectionInfo {
                id: ConnectionId::random(),
                name: format!("crowd-{i}"),
                role: Role::Publisher,
                data: String::new(),
                joined_at: 1,
            };
            (TestRelay::session(), info)
        })
        .collect();
    let hb = "signalbox.hb";
    let beat = |node: &str, members| {
        payload(
            Some(SECRET),
            hb,
            node,
            1,
            Forged::Heartbeat {
                name: node.to_owned(),
                members,
            },
        )
    };
    publish(hb, beat("crowd", crowd)).await;
    for i in 0..100 {
        publish(hb, beat(&format!("ghost-{i}"), Vec::new())).await;
    }
    spy.flush().await.unwrap();
    wait_for("the crowd to arrive", || {
        b.handle.members(&TestRelay::session()).len() > 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_b = b.handle.members(&TestRelay::session()).len();
    assert_eq!(
        on_b,
        2 + 3000 + 1,
        "ann, bob, a session's worth of crowd, mallory"
    );
    assert!(b.handle.cluster_status().unwrap().nodes.len() <= 64);
    assert!(bob.is_connected());

    // Refused and counted: replay, changed, unsealed, wrong key (4); the signal as ann and
    // the kick on the wrong subject (2); four bad frames and the replayed number (5). (The
    // claim of ann's id is ignored as a roster change.)
    let refused = refused_count(&b).await - before;
    assert!(refused >= 11, "refused {refused}");
}

/// A node that is busy sending its members' signals may have its heartbeats wait behind them
/// for longer than the node timeout: its signals show it is alive. Here a node (with the key)
/// announces a member, then sends only that member's signals for twice the timeout, and no
/// heartbeat: every signal arrives, and the member never leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_signals_arrive_is_alive_without_heartbeats() {
    use signalbox_relay::cluster_forge::{Forged, frame, payload};
    let nats = Nats::start();
    let b = node(&nats, "b").await;
    let (_bob, mut bob_ev) = b.join("bob").await;
    let busy = async_nats::connect(nats.url()).await.unwrap();
    let subject = "signalbox.s.test";
    let sam = ConnectionInfo {
        id: ConnectionId::random(),
        name: "sam".into(),
        role: Role::Publisher,
        data: String::new(),
        joined_at: 1,
    };
    let sam_id = sam.id;
    let joined = Forged::Joined {
        v: 1,
        session: TestRelay::session(),
        info: sam,
    };
    busy.publish(subject, payload(Some(SECRET), subject, "busy", 1, joined))
        .await
        .unwrap();
    busy.flush().await.unwrap();
    let signals = 12u64;
    let send = async {
        for seq in 1..=signals {
            let signal = Forged::Signal {
                from: sam_id,
                seq,
                to: Target::All,
                frame: frame(seq, true, "chat", &format!("busy {seq}")),
            };
            busy.publish(
                subject,
                payload(Some(SECRET), subject, "busy", seq + 1, signal),
            )
            .await
            .unwrap();
            busy.flush().await.unwrap();
            // 12 × 0.5 s: twice the node timeout, without a heartbeat.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let receive = async {
        let mut got = 0;
        while got < signals {
            let event = tokio::time::timeout(WAIT, bob_ev.next())
                .await
                .expect("bob hears sam")
                .expect("events go on");
            match event {
                Event::Signal(s) => {
                    got += 1;
                    assert_eq!(s.from, Some(sam_id));
                    assert_eq!(s.data, format!("busy {got}"));
                }
                Event::Left { peer, .. } if peer.id == sam_id => {
                    panic!("sam left after {got} signals")
                }
                _ => {}
            }
        }
    };
    tokio::join!(send, receive);
}

/// A node whose secret differs cannot join the cluster: the others refuse its messages, do
/// not list it or its members, and its clients' signals reach nobody on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_cluster_key_is_not_part_of_the_cluster() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    formed(&[&a, &b]).await;
    let outsider = node_with(&nats, "outsider", |c| {
        share_secret(
            c.data_dir.as_ref().unwrap(),
            b"a-different-secret-of-more-than-32-bytes",
        )
    })
    .await;
    let (a1, mut a1_ev) = a.join("a1").await;
    let (o1, _o1_ev) = outsider.join("o1").await;
    let (_b1, _b1_ev) = b.join("b1").await;
    members(&[&a, &b], 2).await;
    wait_for("the outsider's heartbeats to be refused", || {
        a.handle
            .cluster_status()
            .is_some_and(|s| s.nodes == vec!["b".to_owned()])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        a.handle.cluster_status().unwrap().nodes,
        vec!["b".to_owned()]
    );
    assert_eq!(outsider.handle.cluster_status().unwrap().nodes.len(), 0);
    assert_eq!(a.handle.members(&TestRelay::session()).len(), 2);
    assert!(refused_count(&a).await > 0);
    // Its member's signals stay on the outsider.
    o1.send(Signal::to_all("chat", "from outside"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    a1.send(Signal::to_all("chat", "inside"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    assert_eq!(next_signal(&mut a1_ev).await.data, "inside");
}

/// The README's secured set-up: NATS over TLS with a user and a password. Nodes that give
/// both (in the URL) and the CA form the cluster; one without the password never gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_nats_over_tls_with_a_password_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("nats.pem"), dir.path().join("nats-key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let nats = Nats::start_with(vec![
        "--tls".into(),
        "--tlscert".into(),
        path(&cert),
        "--tlskey".into(),
        path(&key),
        "--user".into(),
        "relay".into(),
        "--pass".into(),
        "s3cret-pass".into(),
    ]);
    let node = |name: &str, url: String| {
        let (name, cert) = (name.to_owned(), cert.clone());
        TestRelay::start_with(move |c| {
            share_secret(c.data_dir.as_ref().unwrap(), SECRET);
            c.cluster = Some(url);
            c.cluster_ca = Some(cert);
            c.node_name = Some(name);
            c.http = Some("127.0.0.1:0".parse().unwrap());
        })
    };
    let secured = format!("tls://relay:s3cret-pass@127.0.0.1:{}", nats.port);
    let a = node("a", secured.clone()).await;
    let b = node("b", secured).await;
    formed(&[&a, &b]).await;
    let (a1, _a1_ev) = a.join("a1").await;
    let (_b1, mut b1_ev) = b.join("b1").await;
    members(&[&a, &b], 2).await;
    a1.send(Signal::to_all("chat", "over tls"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    assert_eq!(next_signal(&mut b1_ev).await.data, "over tls");
    // Without the password NATS refuses the node: it serves alone, and the cluster does not
    // see it.
    let c = node("c", format!("tls://127.0.0.1:{}", nats.port)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!c.handle.cluster_status().unwrap().connected);
    assert_eq!(
        a.handle.cluster_status().unwrap().nodes,
        vec!["b".to_owned()]
    );
}

/// A moderator removes a member served by another node, from its own client (not only
/// through REST): the member is disconnected and everyone sees it leave, removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_removes_a_member_on_another_node() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    formed(&[&a, &b]).await;
    let (moderator, mut m_ev) = a.join_as(Role::Moderator, "mod").await;
    let (b1, mut b1_ev) = b.join("b1").await;
    members(&[&a, &b], 2).await;
    moderator.kick(b1.me().id).await.unwrap();
    let gone = expect(&mut b1_ev, "b1 removed", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(gone, LeftReason::ForceDisconnected);
    assert_eq!(
        next_left(&mut m_ev, b1.me().id).await,
        LeftReason::ForceDisconnected
    );
}

/// A member of another node that sends a few signals and leaves at once: a listener here
/// hears every one of them before it hears the leave (this node tells the leave once the
/// leaver's routes have written what they hold, as it does for its own members).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_sender_on_another_node_is_heard_before_its_left() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    formed(&[&a, &b]).await;
    let (_listener, mut l_ev) = a.join("listener").await;
    one_shot_senders_are_heard_before_they_leave(&b, &mut l_ev).await;
}

/// Random schedules across two nodes: members on both join, leave, send to everyone, to one
/// and to lists, lose their network for less than the grace period and resume, while someone
/// on NATS publishes forged signals. Whatever the interleaving, every stayer gets each
/// sender's signals in the order sent, none twice, none it was not sent, none forged, and
/// every signal sent to it (or, had the relay run out of room, a `Missed` that counts it).
///
/// `SIGNALBOX_CHAOS_CASES` runs more schedules (4 by default); a failure shrinks to a short
/// schedule and prints it.
#[test]
fn random_interleavings_across_nodes_lose_nothing() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = std::env::var("SIGNALBOX_CHAOS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nats = Nats::start();
    let quick = |c: &mut signalbox_relay::RelayConfig| {
        c.idle_timeout = Duration::from_secs(1);
        c.keep_alive = Duration::from_millis(200);
        c.resume_grace = Duration::from_secs(10);
        // Room for every burst a schedule makes (what a spent budget does — closing the
        // receivers furthest behind — is the hostile tests' subject): here the accounting
        // is what is checked, within the budget all along and back to nothing at the end.
        c.held_bytes = HELD;
        c.session_held_bytes = HELD;
    };
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let schedule = (
        proptest::collection::vec(chaos_step(), 10..60),
        proptest::bool::weighted(0.25),
    );
    let result = runner.run(&schedule, |(steps, lonely)| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Fresh nodes for every schedule: what one leaves behind cannot fail the next.
        rt.block_on(async {
            let (a, b) = (
                node_with(&nats, &format!("a{n}"), quick).await,
                node_with(&nats, &format!("b{n}"), quick).await,
            );
            formed(&[&a, &b]).await;
            chaos_case([&a, &b], &nats, n, steps, lonely).await;
        });
        Ok(())
    });
    result.unwrap();
}

/// One step of a random schedule ([`random_interleavings_across_nodes_lose_nothing`]).
/// Indices are taken modulo what exists when the step runs.
#[derive(Debug, Clone)]
enum Step {
    /// A live member (a stayer or a visitor) sends `n` signals of `size` bytes to everyone,
    /// to one stayer, or to a list of stayers, as fast as it can.
    Send {
        who: usize,
        to: To,
        n: u16,
        size: u16,
    },
    /// A stayer behind a faulty link loses its network for `ms` (the relay's grace period is
    /// longer: it resumes).
    Blackout {
        stayer: usize,
        ms: u64,
    },
    /// A stayer's faulty link starts dropping, duplicating and reordering datagrams (or
    /// stops).
    Weather {
        stayer: usize,
        bad: bool,
    },
    /// A visitor joins on node `node` and at once sends `burst` signals to everyone.
    Visit {
        node: usize,
        burst: u8,
    },
    /// A visitor leaves (after the relay accepted its signals).
    Leave {
        visitor: usize,
    },
    /// Someone on NATS publishes a signal claiming a stayer's id: without the key, with a
    /// wrong key, or with the key from a node that does not have that member.
    Forge {
        stayer: usize,
        how: u8,
    },
    Pause {
        ms: u64,
    },
}

#[derive(Debug, Clone)]
enum To {
    All,
    One(usize),
    List(Vec<usize>),
}

fn chaos_step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let to = prop_oneof![
        2 => Just(To::All),
        1 => (0usize..STAYERS).prop_map(To::One),
        1 => proptest::collection::btree_set(0usize..STAYERS, 1..=3)
            .prop_map(|s| To::List(s.into_iter().collect())),
    ];
    prop_oneof![
        12 => (0usize..16, to, prop_oneof![4 => Just(1u16), 1 => 2u16..300], prop_oneof![3 => 0u16..64, 1 => 64u16..8000])
            .prop_map(|(who, to, n, size)| Step::Send { who, to, n, size }),
        2 => (0usize..8, 200u64..1600).prop_map(|(stayer, ms)| Step::Blackout { stayer, ms }),
        2 => (0usize..2, 0u8..4).prop_map(|(node, burst)| Step::Visit { node, burst }),
        1 => (0usize..8, any::<bool>()).prop_map(|(stayer, bad)| Step::Weather { stayer, bad }),
        2 => (0usize..8).prop_map(|visitor| Step::Leave { visitor }),
        1 => (0usize..8, 0u8..3).prop_map(|(stayer, how)| Step::Forge { stayer, how }),
        2 => (0u64..40).prop_map(|ms| Step::Pause { ms }),
    ]
}

/// Members that stay for a whole schedule: 0 and 1 on node A, 2 and 3 on node B (or all on
/// node A, when node B is to have only visitors); the even ones reach their node through a
/// faulty link (the blackouts).
const STAYERS: usize = 4;

/// A member of a schedule, with what it heard and the receipts of what it sent.
struct Chaos {
    name: String,
    client: Client,
    log: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
    receipts: Vec<signalbox_client::Receipt>,
    sent: usize,
}

impl Chaos {
    async fn join(options: ConnectOptions, name: String) -> Self {
        let (client, mut events) = Client::connect(options).await.unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                keep.lock().unwrap().push(e);
            }
        });
        Self {
            name,
            client,
            log,
            receipts: Vec::new(),
            sent: 0,
        }
    }

    /// Sends a signal to `to` and records it in `sent`.
    async fn send(&mut self, to: &To, size: usize, ids: &[ConnectionId], sent: &mut Vec<Sent>) {
        self.sent += 1;
        let mut data = format!("{}:{}:", self.name, self.sent);
        data.extend(std::iter::repeat_n('x', size.saturating_sub(data.len())));
        let (signal, to) = match to {
            To::All => (
                Signal::to_all("chaos", data.clone()),
                (0..STAYERS).collect(),
            ),
            To::One(i) => (Signal::to_one(ids[*i], "chaos", data.clone()), vec![*i]),
            To::List(l) => (
                Signal::to_list(l.iter().map(|&i| ids[i]).collect(), "chaos", data.clone()),
                l.clone(),
            ),
        };
        let receipt = match self.client.send(signal).await {
            Ok(r) => r,
            Err(e) => panic!(
                "{} cannot send: {e:?}; it heard {:?}",
                self.name,
                self.news()
            ),
        };
        sent.push(Sent {
            from: self.client.me().id,
            seq: receipt.seq(),
            data,
            to,
        });
        self.receipts.push(receipt);
    }

    /// What it heard besides signals (for a failure's message).
    fn news(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|e| !matches!(e, Event::Signal(_)))
            .map(|e| format!("{e:?}"))
            .collect()
    }

    /// Waits until the relay accepted everything sent.
    async fn accepted(&mut self) {
        for r in std::mem::take(&mut self.receipts) {
            let seq = r.seq();
            let got = tokio::time::timeout(Duration::from_secs(15), r.accepted()).await;
            assert!(
                matches!(got, Ok(Ok(_))),
                "{}'s signal {seq} was not accepted: {got:?}; it heard {:?}",
                self.name,
                self.news()
            );
        }
    }
}

/// A signal of a schedule: its sender and seq, and which stayers it was for.
struct Sent {
    from: ConnectionId,
    seq: u64,
    data: String,
    to: Vec<usize>,
}

/// Runs one schedule in a fresh session across the two nodes, then checks what every stayer
/// heard. `lonely`: the stayers are all on node A, so node B watches the session only while a
/// visitor is there, and everything its visitors send crosses to node A.
async fn chaos_case(
    nodes: [&TestRelay; 2],
    nats: &Nats,
    case: u64,
    steps: Vec<Step>,
    lonely: bool,
) {
    use signalbox_relay::cluster_forge::{Forged, frame, payload};
    use signalbox_relay::test_utils::faulty::{Faults, FaultyLink};
    use std::sync::Arc;
    let session = format!("chaos-{case}");
    let sid = signalbox_proto::SessionId::new(&session).unwrap();
    let options = |node: &TestRelay, port: u16, name: &str| {
        let mut o = ConnectOptions::new("127.0.0.1", port, sid.clone())
            .with_fingerprint(node.handle.fingerprint())
            .with_token(node.token_for(&session, Role::Publisher, name));
        o.idle_timeout = Duration::from_secs(1);
        o.keep_alive = Duration::from_millis(200);
        o.connect_timeout = Duration::from_secs(1);
        o
    };
    let mut links = Vec::new();
    let mut stayers = Vec::new();
    for i in 0..STAYERS {
        let node = nodes[if lonely { 0 } else { i / 2 }];
        let name = format!("stayer{i}");
        let port = if i % 2 == 0 {
            let seed = case * 10 + i as u64;
            let link = FaultyLink::start(node.handle.quic_addr(), seed, Faults::default()).await;
            let port = link.addr().port();
            links.push(Arc::new(link));
            port
        } else {
            node.handle.quic_addr().port()
        };
        stayers.push(Chaos::join(options(node, port, &name), name).await);
    }
    wait_for("the stayers to see each other", || {
        nodes
            .iter()
            .all(|n| n.handle.members(&sid).len() == STAYERS)
            && stayers
                .iter()
                .all(|s| s.client.peers().len() == STAYERS - 1)
    })
    .await;
    let ids: Vec<ConnectionId> = stayers.iter().map(|s| s.client.me().id).collect();
    let spy = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("signalbox.s.{session}");

    // What the nodes hold for delivery, sampled all along.
    let most = std::sync::Mutex::new((0usize, 0usize));
    let sampler = async {
        loop {
            for n in nodes {
                let (queued, replay) = n.handle.held_bytes();
                let mut m = most.lock().unwrap();
                *m = (m.0.max(queued), m.1.max(replay));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let mut visitors: Vec<Chaos> = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    let mut blackouts = Vec::new();
    let mut dark: Vec<Option<tokio::task::JoinHandle<()>>> = vec![None, None];
    // Which stayers lost their network at some point.
    let mut blacked = [false; STAYERS];
    let (mut forged, mut visits) = (0u64, 0);
    let schedule = async {
        for step in steps {
            match step {
                Step::Send { who, to, n, size } => {
                    let who = who % (STAYERS + visitors.len());
                    let m = match who.checked_sub(STAYERS) {
                        None => &mut stayers[who],
                        Some(v) => &mut visitors[v],
                    };
                    for _ in 0..n {
                        m.send(&to, size.into(), &ids, &mut sent).await;
                    }
                }
                Step::Blackout { stayer, ms } => {
                    let l = stayer % links.len();
                    if dark[l].as_ref().is_some_and(|t| !t.is_finished()) {
                        continue;
                    }
                    let link = links[l].clone();
                    link.blackhole(true);
                    blacked[l * 2] = true;
                    let t = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        link.blackhole(false);
                    });
                    if let Some(old) = dark[l].replace(t) {
                        blackouts.push(old);
                    }
                }
                Step::Weather { stayer, bad } => {
                    let faults = if bad {
                        Faults {
                            drop: 0.05,
                            duplicate: 0.03,
                            reorder: 0.05,
                            ..Faults::default()
                        }
                    } else {
                        Faults::default()
                    };
                    links[stayer % links.len()].set_faults(faults);
                }
                Step::Visit { node, burst } => {
                    visits += 1;
                    let name = format!("visitor{visits}");
                    let node = nodes[node % 2];
                    let port = node.handle.quic_addr().port();
                    let mut m = Chaos::join(options(node, port, &name), name).await;
                    for _ in 0..burst {
                        m.send(&To::All, 0, &ids, &mut sent).await;
                    }
                    visitors.push(m);
                }
                Step::Leave { visitor } => {
                    if visitors.is_empty() {
                        continue;
                    }
                    let mut m = visitors.remove(visitor % visitors.len());
                    m.accepted().await;
                    m.client.leave().await;
                }
                Step::Forge { stayer, how } => {
                    forged += 1;
                    let seq = 1_000_000 + forged;
                    let signal = Forged::Signal {
                        from: ids[stayer % STAYERS],
                        seq,
                        to: Target::All,
                        frame: frame(seq, true, "chaos", &format!("forged:{forged}")),
                    };
                    let wrong: &[u8] = b"not-the-cluster-secret-but-long-enough-0123";
                    let (key, node) = match how {
                        0 => (None, "mallory"),
                        1 => (Some(wrong), "mallory"),
                        _ => (Some(SECRET), "rogue"),
                    };
                    let bytes = payload(key, &subject, node, forged, signal);
                    spy.publish(subject.clone(), bytes).await.unwrap();
                }
                Step::Pause { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
        }
        for t in blackouts.into_iter().chain(dark.into_iter().flatten()) {
            t.await.unwrap();
        }
        for m in stayers.iter_mut().chain(visitors.iter_mut()) {
            m.accepted().await;
        }
    };
    tokio::select! {
        _ = schedule => {}
        _ = sampler => {}
    }
    spy.flush().await.unwrap();

    // Everything sent to a stayer arrives (or is counted as missed); then a quiet moment for
    // anything that should not come.
    let signals_of = |m: &Chaos| -> (
        Vec<signalbox_client::ReceivedSignal>,
        Vec<(ConnectionId, u64, u64)>,
    ) {
        let log = m.log.lock().unwrap();
        let mut got = Vec::new();
        let mut missed = Vec::new();
        for e in log.iter() {
            match e {
                Event::Signal(s) => got.push(s.clone()),
                Event::Missed {
                    from: Some(f),
                    first,
                    last,
                    ..
                } => missed.push((*f, *first, *last)),
                _ => {}
            }
        }
        (got, missed)
    };
    let owed = |i: usize,
                got: &[signalbox_client::ReceivedSignal],
                missed: &[(ConnectionId, u64, u64)]| {
        sent.iter()
            .filter(|s| s.to.contains(&i))
            .filter(|s| {
                !got.iter().any(|g| g.from == Some(s.from) && g.seq == s.seq)
                    && !missed
                        .iter()
                        .any(|&(f, lo, hi)| f == s.from && (lo..=hi).contains(&s.seq))
            })
            .map(|s| s.data.clone())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let missing: Vec<(usize, Vec<String>)> = (0..STAYERS)
            .map(|i| {
                let (got, missed) = signals_of(&stayers[i]);
                (i, owed(i, &got, &missed))
            })
            .filter(|(_, o)| !o.is_empty())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "case {case}: signals never arrived, by stayer: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by_id: HashMap<(ConnectionId, u64), &Sent> =
        sent.iter().map(|s| ((s.from, s.seq), s)).collect();
    for (i, m) in stayers.iter().enumerate() {
        let (got, _) = signals_of(m);
        let mut last: HashMap<Option<ConnectionId>, u64> = HashMap::new();
        for g in &got {
            assert!(
                !g.data.starts_with("forged"),
                "case {case}: stayer{i} got a forged signal: {g:?}"
            );
            let from = g.from.expect("a member's signal");
            let s = by_id
                .get(&(from, g.seq))
                .unwrap_or_else(|| panic!("case {case}: stayer{i} got {g:?}, never sent"));
            assert_eq!(g.data, s.data, "case {case}: stayer{i}: the seq's own data");
            assert!(
                s.to.contains(&i),
                "case {case}: stayer{i} got {:?}, sent to {:?}",
                s.data,
                s.to
            );
            let prev = last.insert(g.from, g.seq).unwrap_or(0);
            assert!(
                g.seq > prev,
                "case {case}: stayer{i} got {} after seq {prev} of the same sender (a repeat or out of order)",
                s.data
            );
        }
        // A visitor's signals come before it is seen to leave, on its node and on the other
        // — for a stayer that was there all along. (One that was away when a visitor left
        // may see the leave first: its client learns it from the resume's `Welcome`, before
        // the routes replay what it missed.)
        if blacked[i] {
            continue;
        }
        let log = m.log.lock().unwrap();
        let mut left = std::collections::HashSet::new();
        for e in log.iter() {
            match e {
                Event::Left { peer, .. } => {
                    left.insert(peer.id);
                }
                Event::Signal(g) => assert!(
                    !g.from.is_some_and(|f| left.contains(&f)),
                    "case {case}: stayer{i} got {:?} after its sender left",
                    g.data
                ),
                _ => {}
            }
        }
    }
    // Within the budgets: replay within its half; queues within theirs, but for what the
    // rules let through past it (a waiting sender's one signal; another node's signals,
    // which cannot wait, to receivers ahead of the others).
    let (queued, replay) = *most.lock().unwrap();
    assert!(
        replay <= HELD / 2,
        "case {case}: {replay} bytes kept for replay"
    );
    assert!(
        queued <= HELD / 2 + HELD / 4,
        "case {case}: {queued} bytes queued"
    );
    // And nothing is held once everyone is gone.
    for m in stayers.iter().chain(visitors.iter()) {
        m.client.close();
    }
    wait_for("the nodes to hold nothing", || {
        nodes.iter().all(|n| n.handle.held_bytes() == (0, 0))
    })
    .await;
}

/// The nodes' memory budget in the random schedules, for all sessions and for one.
const HELD: usize = 64 << 20;
