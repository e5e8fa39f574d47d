//! Reliability under a bad network, through `FaultyLink` (a seeded loopback proxy that
//! drops, reorders, duplicates and blackholes datagrams): loss, blackouts within and past the
//! relay's grace period, a relay restart, bounded queues. Real relay, real clients, real QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use signalbox_client::{Client, ConnectOptions, Event, Events, SendError, Signal};
use signalbox_proto::{CloseCode, ConnectionId, LeftReason, RefuseCode, RelayMessage, Role};
use signalbox_relay::test_utils::faulty::{Faults, FaultyLink};
use signalbox_relay::{Relay, RelayConfig};

/// Client options through `link`: quick to notice a dead network (1 s), quick to retry.
fn via(relay: &TestRelay, link: &FaultyLink, name: &str) -> ConnectOptions {
    let mut o = relay.options(Role::Publisher, name);
    o.port = link.addr().port();
    o.idle_timeout = Duration::from_secs(1);
    o.keep_alive = Duration::from_millis(200);
    o.connect_timeout = Duration::from_secs(1);
    o
}

/// A relay that also notices a dead network within a second.
async fn relay_with(grace: Duration, tune: impl FnOnce(&mut RelayConfig)) -> TestRelay {
    TestRelay::start_with(|c| {
        c.signals_per_second = 0;
        c.idle_timeout = Duration::from_secs(1);
        c.keep_alive = Duration::from_millis(200);
        c.resume_grace = grace;
        tune(c);
    })
    .await
}

/// A relay's data directory (identity, token secret, stateless-reset key) and address, to
/// start it again after it stopped, as a restarted daemon would be.
struct Restartable {
    data: tempfile::TempDir,
    addr: std::net::SocketAddr,
    tune: fn(&mut RelayConfig),
}

impl Restartable {
    /// The first start, on a free port.
    async fn start(tune: fn(&mut RelayConfig)) -> (Self, TestRelay) {
        let mut r = Self {
            data: tempfile::tempdir().unwrap(),
            addr: "127.0.0.1:0".parse().unwrap(),
            tune,
        };
        let handle = Relay::spawn(r.config()).await.unwrap();
        r.addr = handle.quic_addr();
        let test = TestRelay {
            handle,
            dir: tempfile::tempdir().unwrap(),
        };
        (r, test)
    }

    fn config(&self) -> RelayConfig {
        let mut c = RelayConfig {
            listen: self.addr,
            ..RelayConfig::local(self.data.path())
        };
        (self.tune)(&mut c);
        c
    }

    /// Starts it again (the old socket may take a moment to go).
    async fn again(&self) -> signalbox_relay::RelayHandle {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Relay::spawn(self.config()).await {
                Ok(r) => return r,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("restart: {e}"),
            }
        }
    }
}

/// Collects signals (by sender) until `n` arrived, each signal's data checked to be `data` of
/// the number it starts with; also returns the other events seen.
async fn collect(
    events: &mut Events,
    n: usize,
    within: Duration,
    data: fn(u64) -> String,
) -> (HashMap<Option<ConnectionId>, Vec<u64>>, Vec<Event>) {
    let mut by_sender: HashMap<Option<ConnectionId>, Vec<u64>> = HashMap::new();
    let mut others = Vec::new();
    let mut got = 0;
    let deadline = Instant::now() + within;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Event::Signal(s))) => {
                let number = s.data.split(' ').next().unwrap().parse().unwrap();
                assert!(
                    s.data == data(number),
                    "signal {number}'s data: {:?}",
                    s.data
                );
                by_sender.entry(s.from).or_default().push(number);
                got += 1;
            }
            Ok(Some(other)) => others.push(other),
            Ok(None) => panic!("events ended after {got} of {n} signals: {others:?}"),
            Err(_) => {
                let missing: Vec<Vec<u64>> = by_sender
                    .values()
                    .map(|v| {
                        let max = v.iter().copied().max().unwrap_or(0);
                        (1..=max).filter(|i| !v.contains(i)).collect()
                    })
                    .collect();
                let lens: Vec<(usize, Option<u64>, Option<u64>)> = by_sender
                    .values()
                    .map(|v| (v.len(), v.first().copied(), v.last().copied()))
                    .collect();
                panic!(
                    "only {got} of {n} signals within {within:?}; missing inside: {missing:?}; per sender (count, first, last): {lens:?}; other events: {others:?}"
                )
            }
        }
    }
    (by_sender, others)
}

/// What follows signal `i`'s number in its data (after a space when not empty): every fifth
/// carries 1–3 KiB, so QUIC streams hold large writes (each a segment of its own in quinn's
/// send buffer) among merged small ones, and their losses are sent again from the middle.
fn padding(i: u64) -> String {
    if !i.is_multiple_of(5) {
        return String::new();
    }
    let len = 1024 + (i * 37 % 2048) as usize;
    (0..len)
        .map(|k| char::from(b'a' + ((i as usize + k) % 26) as u8))
        .collect()
}

/// Signal `i`'s data when it carries its number alone.
fn plain(i: u64) -> String {
    i.to_string()
}

/// Signal `i`'s data: its number, then its [`padding`].
fn numbered(i: u64) -> String {
    let pad = padding(i);
    if pad.is_empty() {
        plain(i)
    } else {
        format!("{i} {pad}")
    }
}

fn in_order(seqs: &[u64], n: u64) {
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>().as_slice(),
        "every signal once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_order_under_loss_reordering_and_duplication() {
    let relay = TestRelay::start_with(|c| c.signals_per_second = 0).await;
    let faults = Faults {
        drop: 0.05,
        duplicate: 0.03,
        reorder: 0.05,
        ..Faults::default()
    };
    let mut links = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..3 {
        let link = FaultyLink::start(relay.handle.quic_addr(), 100 + i, faults).await;
        let mut o = relay.options(Role::Publisher, &format!("r{i}"));
        o.port = link.addr().port();
        receivers.push(Client::connect(o).await.unwrap());
        links.push(link);
    }
    let mut senders = Vec::new();
    for i in 0..3 {
        let link = FaultyLink::start(relay.handle.quic_addr(), 200 + i, faults).await;
        let mut o = relay
            .options(Role::Publisher, &format!("s{i}"))
            .with_receive_broadcasts(false);
        o.port = link.addr().port();
        senders.push(Client::connect(o).await.unwrap().0);
        links.push(link);
    }
    const N: u64 = 5000;
    let mut tasks = Vec::new();
    for s in senders.clone() {
        tasks.push(tokio::spawn(async move {
            send_many(&s, "n", N, numbered).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), N);
    }
    for (_, events) in &mut receivers {
        let (by_sender, _) =
            collect(events, 3 * N as usize, Duration::from_secs(120), numbered).await;
        for s in &senders {
            in_order(&by_sender[&Some(s.me().id)], N);
        }
        no_signal(events, Duration::from_millis(200)).await;
    }
}

/// Sends `n` numbered signals to everyone, one every `every`, from `sender`.
fn sending(
    sender: Client,
    n: u64,
    every: Duration,
) -> tokio::task::JoinHandle<Vec<Result<u64, SendError>>> {
    tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 1..=n {
            receipts.push(
                sender
                    .send(Signal::to_all("n", i.to_string()))
                    .await
                    .unwrap(),
            );
            tokio::time::sleep(every).await;
        }
        let mut out = Vec::new();
        for r in receipts {
            out.push(r.accepted().await);
        }
        out
    })
}

/// Keeps every event of a client, so a test can wait for one without losing the others.
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Recorder {
    fn start(mut events: Events) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                s2.lock().unwrap().push(e);
            }
        });
        Self { seen }
    }

    async fn until(&self, what: &str, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let seen = self.seen.lock().unwrap();
                if done(&seen) {
                    return seen.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.seen
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| !matches!(e, Event::Signal(_)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn signal_seqs(events: &[Event], from: ConnectionId) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) if s.from == Some(from) => s.data.parse().ok(),
            _ => None,
        })
        .collect()
}

async fn wait_for(events: &mut Events, what: &str, mut pick: impl FnMut(&Event) -> bool) -> Event {
    expect(events, what, |e| pick(&e).then_some(e)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_blacked_out_within_the_grace_period_misses_nothing() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 1, Faults::default()).await;
    let (receiver, r_ev) = Client::connect(via(&relay, &link, "receiver"))
        .await
        .unwrap();
    let receiver_id = receiver.me().id;
    let r = Recorder::start(r_ev);
    let (_observer, o_ev) = relay.join("observer").await;
    let o = Recorder::start(o_ev);
    let (sender, _s_ev) = relay.join_sender("sender").await;
    let from = sender.me().id;
    const N: u64 = 600;
    let send = sending(sender.clone(), N, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    link.blackhole(true);
    r.until("the receiver noticing", |e| {
        e.iter().any(|e| matches!(e, Event::Reconnecting { .. }))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    link.blackhole(false);
    assert!(send.await.unwrap().iter().all(Result::is_ok));
    let seen = r
        .until("every signal", |e| signal_seqs(e, from).len() >= N as usize)
        .await;
    in_order(&signal_seqs(&seen, from), N);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Reconnected { resumed: true, .. })),
        "resumed as the same connection"
    );
    assert_eq!(receiver.me().id, receiver_id);
    // The observer saw every signal too, and never saw the receiver leave.
    let seen = o
        .until("every signal", |e| signal_seqs(e, from).len() >= N as usize)
        .await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Left { peer, .. } if peer.id == receiver_id)),
        "peers never saw the receiver leave"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        signal_seqs(&r.seen.lock().unwrap(), from).len(),
        N as usize,
        "and nothing twice"
    );
}

/// A quiet sender's signal written during a receiver's outage is replayed as soon as the
/// receiver resumes — not when the sender next speaks or its idle stream is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resume_what_a_quiet_sender_sent_arrives_at_once() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 9, Faults::default()).await;
    let (_receiver, mut r_ev) = Client::connect(via(&relay, &link, "receiver"))
        .await
        .unwrap();
    let (sender, _s_ev) = relay.join_sender("sender").await;
    send_many(&sender, "t", 1, |i| i.to_string()).await;
    assert_eq!(next_signal(&mut r_ev).await.data, "1");
    // The outage starts; the relay does not know yet and writes the one signal to the dead
    // connection. Then the sender stays silent.
    link.blackhole(true);
    send_many(&sender, "t", 1, |_| "2".into()).await;
    wait_for(&mut r_ev, "the loss", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.blackhole(false);
    // The replay may even overtake the client's own Reconnected event.
    let mut resumed = None;
    let mut got = None;
    while got.is_none() || resumed.is_none() {
        let limit = resumed.map_or(Duration::from_secs(30), |at: Instant| {
            Duration::from_secs(1).saturating_sub(at.elapsed())
        });
        match tokio::time::timeout(limit, r_ev.next()).await {
            Ok(Some(Event::Reconnected { resumed: true, .. })) => resumed = Some(Instant::now()),
            Ok(Some(Event::Signal(s))) => got = Some(s.data),
            Ok(Some(_)) => {}
            other => panic!("no held signal within 1 s of the resume ({resumed:?}): {other:?}"),
        }
    }
    assert_eq!(got.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_blacked_out_keeps_sending_and_nothing_is_lost() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 2, Faults::default()).await;
    let (sender, mut s_ev) =
        Client::connect(via(&relay, &link, "sender").with_receive_broadcasts(false))
            .await
            .unwrap();
    let (_receiver, mut r_ev) = relay.join("receiver").await;
    const N: u64 = 600;
    let send = sending(sender.clone(), N, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    link.blackhole(true);
    wait_for(&mut s_ev, "the sender noticing", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    link.blackhole(false);
    let receipts = send.await.unwrap();
    assert_eq!(receipts.len(), N as usize);
    assert!(
        receipts.iter().all(Result::is_ok),
        "every signal accepted once back"
    );
    let (by_sender, _) = collect(&mut r_ev, N as usize, Duration::from_secs(30), plain).await;
    in_order(&by_sender[&Some(sender.me().id)], N);
    no_signal(&mut r_ev, Duration::from_millis(300)).await;
}

/// At `max_unaccepted`, a connected sender waits for the relay to take some (nothing fails,
/// nothing is dropped); a reconnecting one is told at once that its queue is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_unaccepted_queue_slows_a_connected_sender_and_fails_a_reconnecting_one() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 13, Faults::default()).await;
    let mut options = via(&relay, &link, "sender").with_receive_broadcasts(false);
    options.max_unaccepted = 4;
    let (sender, mut s_ev) = Client::connect(options).await.unwrap();
    let (_receiver, mut r_ev) = relay.join("receiver").await;
    let n = |i: u64| Signal::to_all("n", i.to_string());

    // Connected, the relay out of reach for less than the idle timeout: four wait unaccepted,
    // the fifth `send` waits for room instead of failing.
    link.blackhole(true);
    for i in 1..=4 {
        sender.send_unconfirmed(n(i)).await.unwrap();
    }
    // Given up while it waits, a send sent nothing (the fifth below still gets seq 5, and the
    // receiver never sees this one).
    let given_up = tokio::time::timeout(
        Duration::from_millis(100),
        sender.send_unconfirmed(Signal::to_all("n", "99")),
    );
    assert!(given_up.await.is_err(), "it waited");
    let fifth = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send(n(5)).await.unwrap().accepted().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fifth.is_finished(),
        "a connected sender at the limit waits: {:?}",
        fifth.await
    );
    link.blackhole(false);
    assert_eq!(
        tokio::time::timeout(WAIT, fifth).await.unwrap().unwrap(),
        Ok(5),
        "sent once the relay took the first, and accepted"
    );

    // Reconnecting: four wait for the link, the fifth fails at once.
    link.blackhole(true);
    wait_for(&mut s_ev, "the sender noticing", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    for i in 6..=9 {
        sender.send_unconfirmed(n(i)).await.unwrap();
    }
    assert_eq!(
        sender.send_unconfirmed(n(10)).await,
        Err(SendError::QueueFull(4))
    );
    link.blackhole(false);
    let (by_sender, _) = collect(&mut r_ev, 9, Duration::from_secs(30), plain).await;
    in_order(&by_sender[&Some(sender.me().id)], 9);
    no_signal(&mut r_ev, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_past_the_grace_period_leaves_then_rejoins() {
    let relay = relay_with(Duration::from_secs(2), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 3, Faults::default()).await;
    let (client, mut c_ev) = Client::connect(via(&relay, &link, "wanderer"))
        .await
        .unwrap();
    let old_id = client.me().id;
    let (_observer, mut o_ev) = relay.join("observer").await;
    link.blackhole(true);
    let (peer, reason) = expect(&mut o_ev, "the wanderer leaving", |e| match e {
        Event::Left { peer, reason } => Some((peer, reason)),
        _ => None,
    })
    .await;
    assert_eq!((peer.id, reason), (old_id, LeftReason::NetworkDisconnected));
    link.blackhole(false);
    let (resumed, me) = expect(&mut c_ev, "rejoining", |e| match e {
        Event::Reconnected { resumed, me } => Some((resumed, me)),
        _ => None,
    })
    .await;
    assert!(
        !resumed,
        "a new connection: the relay had let the old one go"
    );
    assert_ne!(me.id, old_id);
    assert_eq!(client.me().id, me.id);
    let joined = wait_for(&mut o_ev, "the new connection joining", |e| {
        matches!(e, Event::Joined(_))
    })
    .await;
    assert!(matches!(joined, Event::Joined(p) if p.id == me.id && p.name == "wanderer"));
    // And it works as before.
    client
        .send(Signal::to_all("t", "back"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
    assert_eq!(next_signal(&mut o_ev).await.data, "back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_come_back_by_themselves_after_a_relay_restart() {
    let (restartable, test) = Restartable::start(|c| c.signals_per_second = 0).await;
    let addr = restartable.addr;
    // The sender goes through a link we can cut, so it comes back only after the receiver.
    let link = FaultyLink::start(addr, 4, Faults::default()).await;
    let mut so = test
        .options(Role::Publisher, "sender")
        .with_receive_broadcasts(false);
    so.port = link.addr().port();
    let (sender, mut s_ev) = Client::connect(so).await.unwrap();
    let (receiver, mut r_ev) = test.join("receiver").await;
    let old_receiver = receiver.me().id;

    drop(test); // the relay stops (its clients are told relayShutdown)
    wait_for(&mut r_ev, "the receiver noticing", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    wait_for(&mut s_ev, "the sender noticing", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    link.blackhole(true);
    // Signals sent while the relay is down wait in the sender.
    let mut receipts = Vec::new();
    for i in 1..=10u64 {
        receipts.push(
            sender
                .send(Signal::to_all("queued", i.to_string()))
                .await
                .unwrap(),
        );
    }
    // The same data directory: the same identity and token secret, the same port.
    let relay = restartable.again().await;
    let back = wait_for(&mut r_ev, "the receiver back", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert!(matches!(back, Event::Reconnected { resumed: false, ref me } if me.id != old_receiver));
    link.blackhole(false);
    wait_for(&mut s_ev, "the sender back", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    for r in receipts {
        r.accepted().await.unwrap();
    }
    let (by_sender, _) = collect(&mut r_ev, 10, Duration::from_secs(10), plain).await;
    in_order(&by_sender[&Some(sender.me().id)], 10);
    no_signal(&mut r_ev, Duration::from_millis(300)).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_went_without_a_word_is_known_gone_at_the_first_packet_after_its_restart() {
    // A crash: the relay stops while the client's link is cut, so its farewell is lost.
    // Restarted with the same data directory, its stateless-reset key answers the client's
    // next packet on the old connection, and the client comes back at once rather than after
    // its idle timeout (a minute here).
    let (restartable, test) =
        Restartable::start(|c| c.idle_timeout = Duration::from_secs(60)).await;
    let link = FaultyLink::start(restartable.addr, 6, Faults::default()).await;
    let mut o = test.options(Role::Publisher, "client");
    o.port = link.addr().port();
    o.idle_timeout = Duration::from_secs(60);
    o.keep_alive = Duration::from_millis(300);
    let (client, mut ev) = Client::connect(o).await.unwrap();
    let before = client.me().id;

    link.blackhole(true);
    drop(test);
    let relay = restartable.again().await;
    link.blackhole(false);
    // `wait_for` allows 10 s, the idle timeout is 60: only the reset can tell the client.
    wait_for(&mut ev, "the client noticing", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    let back = wait_for(&mut ev, "the client back", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert!(matches!(back, Event::Reconnected { resumed: false, ref me } if me.id != before));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retry_after_reconnect_sending_while_away_fails_at_once() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 5, Faults::default()).await;
    let mut o = via(&relay, &link, "impatient");
    o.retry_after_reconnect = false;
    let (client, mut ev) = Client::connect(o).await.unwrap();
    link.blackhole(true);
    wait_for(&mut ev, "the loss", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    let started = Instant::now();
    let err = client.send(Signal::to_all("t", "now?")).await.unwrap_err();
    assert_eq!(err, SendError::NotConnected);
    assert_eq!(err.code(), 1010);
    assert!(started.elapsed() < Duration::from_millis(100), "at once");
    link.blackhole(false);
    wait_for(&mut ev, "back", |e| matches!(e, Event::Reconnected { .. })).await;
    client
        .send(Signal::to_all("t", "now"))
        .await
        .unwrap()
        .accepted()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_receiver_is_told_what_it_missed_instead_of_growing_the_relay() {
    // A small queue per receiver: what does not fit while it is away is counted, not kept.
    let relay = relay_with(Duration::from_secs(15), |c| {
        c.receiver_queue_bytes = 32 * 1024
    })
    .await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 6, Faults::default()).await;
    let (_receiver, mut r_ev) = Client::connect(via(&relay, &link, "receiver"))
        .await
        .unwrap();
    let (sender, _s_ev) = relay.join_sender("sender").await;
    link.blackhole(true);
    wait_for(&mut r_ev, "the loss", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    // The relay notices too (same idle timeout), then the flood comes. (Flooded before it
    // notices, the receiver is a live one that cannot keep up: a slow consumer, closed.)
    signalbox_relay::test_utils::wait_for("the relay to notice the loss", || {
        relay
            .handle
            .metrics_text()
            .contains("signalbox_connections_away 1")
    })
    .await;
    const N: u64 = 3000;
    let data = "x".repeat(200);
    send_many(&sender, "flood", N, |_| data.clone()).await;
    link.blackhole(false);
    let mut got = Vec::new();
    let mut missed = None;
    let mut others = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while missed.is_none() || (got.len() as u64) + missed.unwrap_or(0) < N {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r_ev.next()).await {
            Ok(Some(Event::Signal(s))) => got.push(s.seq),
            Ok(Some(Event::Missed {
                from,
                first,
                last,
                count,
            })) => {
                // Whose and which: the sender's, within what it sent.
                assert_eq!(from, Some(sender.me().id));
                assert!(1 <= first && first <= last && last <= N, "{first}..{last}");
                assert!(count <= last - first + 1);
                missed = Some(count)
            }
            Ok(Some(other)) => others.push(other),
            other => panic!(
                "stalled with {} signals, missed {missed:?}: {other:?}; other events: {others:?}",
                got.len()
            ),
        }
    }
    let missed = missed.unwrap();
    assert!(
        missed > 0 && (got.len() as u64) < N,
        "the bound held: got {}, missed {missed}",
        got.len()
    );
    assert_eq!(
        got.len() as u64 + missed,
        N,
        "every signal either delivered or counted"
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "what arrived is in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_after_its_reconnect_timeout() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 7, Faults::default()).await;
    let mut o = via(&relay, &link, "patient");
    o.reconnect_timeout = Duration::from_secs(2);
    let (client, mut ev) = Client::connect(o).await.unwrap();
    link.blackhole(true);
    wait_for(&mut ev, "the loss", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    let started = Instant::now();
    let (reason, message) = expect(&mut ev, "giving up", |e| match e {
        Event::Disconnected { reason, message } => Some((reason, message)),
        _ => None,
    })
    .await;
    assert_eq!(reason, LeftReason::NetworkDisconnected);
    assert!(
        message.contains("could not reconnect within 2 s"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(!client.is_connected() && !client.is_reconnecting());
    assert_eq!(
        client.send(Signal::ping()).await.unwrap_err(),
        SendError::NotConnected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_the_client_gave_up_on_is_not_a_leave() {
    // A client whose dial timed out just as the relay answered closes that connection with
    // `Abandoned`: the member stays away, and the client's next attempt resumes it. A close
    // with `Normal` is a leave, and its resume ticket is spent.
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let (_peer, mut peer_ev) = relay.join("peer").await;
    let token = || Some(relay.token(Role::Publisher, "dialer"));

    let (raw, _) = Raw::join(&relay, token()).await;
    let welcome = raw.welcome.clone().expect("welcome");
    raw.conn
        .close(CloseCode::Abandoned.as_u32().into(), b"dial abandoned");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_again, answer) = Raw::join_resuming(&relay, token(), Some(welcome.resume)).await;
    match answer {
        RelayMessage::Welcome(w) => assert_eq!(w.me.id, welcome.me.id, "the same member"),
        other => panic!("an abandoned dial ended the member: {other:?}"),
    }

    let (raw, _) = Raw::join(&relay, token()).await;
    let welcome = raw.welcome.clone().expect("welcome");
    raw.conn.close(CloseCode::Normal.as_u32().into(), b"bye");
    wait_for(&mut peer_ev, "the leave", |e| {
        matches!(e, Event::Left { peer, reason: LeftReason::ClientDisconnected } if peer.id == welcome.me.id)
    })
    .await;
    let (_again, answer) = Raw::join_resuming(&relay, token(), Some(welcome.resume)).await;
    assert!(
        matches!(&answer, RelayMessage::Refused(r) if r.code == RefuseCode::ResumeFailed),
        "{answer:?}"
    );
}

/// A `Rejected` lost with a connection is told again when the client resumes, before the
/// repeated `Accepted` that covers its seq: without it, that `Accepted` would read as the
/// signal's success.
#[tokio::test]
async fn a_rejection_lost_with_the_connection_is_told_again_on_resume() {
    use signalbox_proto::{Outgoing, SignalError, Target};
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let token = || Some(relay.token(Role::Publisher, "sender"));
    let (mut raw, _) = Raw::join(&relay, token()).await;
    let welcome = raw.welcome.clone().expect("welcome");
    let mut send = raw.open_send().await;
    let signal = |seq, r#type: &str| Outgoing {
        seq,
        to: Target::All,
        r#type: r#type.to_owned().into(),
        data: "".into(),
    };
    send.write_all(&frame(&signal(1, "no spaces")))
        .await
        .unwrap();
    send.write_all(&frame(&signal(2, "fine"))).await.unwrap();
    // The relay took both. (This client reads the answers, to know; one whose network failed
    // would not have had them.)
    loop {
        match raw.next_control().await.expect("the relay's answers") {
            RelayMessage::Accepted { up_to: 2 } => break,
            _ => continue,
        }
    }
    raw.conn
        .close(CloseCode::Abandoned.as_u32().into(), b"network gone");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut again, answer) = Raw::join_resuming(&relay, token(), Some(welcome.resume)).await;
    match answer {
        RelayMessage::Welcome(w) => assert_eq!(w.accepted_up_to, 2),
        other => panic!("{other:?}"),
    }
    let mut told = vec![];
    loop {
        match again.next_control().await.expect("the answers told again") {
            RelayMessage::Rejected { seq, error } => {
                told.push(format!("rejected {seq}: {error:?}"))
            }
            RelayMessage::Accepted { up_to } => {
                told.push(format!("accepted {up_to}"));
                break;
            }
            _ => continue,
        }
    }
    let invalid = SignalError::InvalidType {
        found: ' ',
        position: 2,
    };
    assert_eq!(
        told,
        [format!("rejected 1: {invalid:?}"), "accepted 2".to_owned()]
    );
}

/// A dial whose handshake packets are lost (the path blacked out as it starts) is dialed
/// anew after `handshake_attempt`, instead of waiting on QUIC's retransmissions, which back
/// off to seconds apart (about 1, 3 and 7 s after the first Initial here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_whose_handshake_is_lost_is_dialed_anew() {
    let relay = relay_with(Duration::from_secs(15), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 11, Faults::default()).await;
    link.blackhole(true);
    let mut options = via(&relay, &link, "late");
    options.handshake_attempt = Duration::from_millis(1500);
    options.connect_timeout = Duration::from_secs(6);
    // Long enough that only the attempts decide (an idle timeout also ends a handshake).
    options.idle_timeout = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let dial = tokio::spawn(Client::connect(options));
    tokio::time::sleep(Duration::from_secs(4)).await;
    link.blackhole(false);
    // Dials at 0, 1.5, 3 and 4.5 s: the last one gets through. Retransmissions of the first
    // alone would next reach the relay at about 7 s, past the 6 s connect timeout.
    let (client, _events) = dial.await.unwrap().expect("joined once the path came back");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(
        relay
            .handle
            .members(&TestRelay::session())
            .iter()
            .any(|m| m.id == client.me().id)
    );
}

/// Keeps `link` dark for 1.5 s, longer than both sides' idle timeout (1 s), so the
/// connection is lost; then lifts it and waits until the client behind it has resumed.
async fn resume_after_blackout(link: &FaultyLink, events: &mut Events) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    link.blackhole(false);
    wait_for(events, "the resume", |e| {
        matches!(e, Event::Reconnected { resumed: true, .. })
    })
    .await;
}

/// A signal written just as the network went away, and nothing sent after it: once the
/// client is back, it writes the signal again by itself (the relay never got it), so it is
/// accepted and delivered once — not left waiting for a next signal that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_into_a_blackout_is_sent_again_after_the_resume() {
    let relay = relay_with(Duration::from_secs(10), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 12, Faults::default()).await;
    let (sender, mut s_ev) = Client::connect(via(&relay, &link, "sender")).await.unwrap();
    let (_receiver, mut r_ev) = relay.join("receiver").await;
    link.blackhole(true);
    let receipt = sender.send(Signal::to_all("t", "once")).await.unwrap();
    resume_after_blackout(&link, &mut s_ev).await;
    let accepted = tokio::time::timeout(WAIT, receipt.accepted()).await;
    assert!(matches!(accepted, Ok(Ok(1))), "{accepted:?}");
    assert_eq!(next_signal(&mut r_ev).await.data, "once");
    no_signal(&mut r_ev, Duration::from_millis(300)).await;
}

/// A backlog sent into a blackout, several writes long (small signals merged into the
/// writes, large ones handed on as they are), is written again after the resume, from the
/// oldest signal not accepted, and arrives once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_several_writes_sent_into_a_blackout_arrives_once_in_order() {
    let relay = relay_with(Duration::from_secs(10), |_| {}).await;
    let link = FaultyLink::start(relay.handle.quic_addr(), 13, Faults::default()).await;
    let (sender, mut s_ev) = Client::connect(via(&relay, &link, "sender")).await.unwrap();
    let (_receiver, mut r_ev) = relay.join("receiver").await;
    // Some before the blackout, accepted; the rest (about 600 KiB) into it.
    const BEFORE: u64 = 10;
    const N: u64 = 160;
    let data = |i: u64| {
        // 2 KiB signals are merged into a write, 6 KiB ones written as they are.
        let len = if i.is_multiple_of(3) { 6000 } else { 2000 };
        format!("{i} {}", "x".repeat(len))
    };
    for i in 1..=BEFORE {
        let receipt = sender.send(Signal::to_all("n", data(i))).await.unwrap();
        tokio::time::timeout(WAIT, receipt.accepted())
            .await
            .unwrap()
            .unwrap();
    }
    link.blackhole(true);
    let mut receipts = Vec::new();
    for i in BEFORE + 1..=N {
        receipts.push(sender.send(Signal::to_all("n", data(i))).await.unwrap());
    }
    resume_after_blackout(&link, &mut s_ev).await;
    for (i, receipt) in (BEFORE + 1..).zip(receipts) {
        let accepted = tokio::time::timeout(WAIT, receipt.accepted()).await;
        assert!(
            matches!(accepted, Ok(Ok(seq)) if seq == i),
            "{i}: {accepted:?}"
        );
    }
    let mut got = Vec::new();
    while got.len() < N as usize {
        let s = next_signal(&mut r_ev).await;
        let (i, rest) = s.data.split_once(' ').unwrap();
        let i: u64 = i.parse().unwrap();
        assert_eq!(
            rest.len(),
            data(i).len() - i.to_string().len() - 1,
            "signal {i} whole"
        );
        got.push(i);
    }
    in_order(&got, N);
    no_signal(&mut r_ev, Duration::from_millis(300)).await;
}

/// A delivery stream whose header the client read while an earlier stream's header was still
/// on its way: when the connection ends there, the signals that came with the header are read
/// and handed over, not dropped. The relay counts what a client took off a stream as read
/// (the stream's flow-control credit says so) and does not keep it for the resume. A stand-in
/// relay opens two streams and writes to the second only (QUIC opens the first with it), so
/// the first header never comes; then it closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_read_with_a_header_are_kept_when_the_connection_ends() {
    use signalbox_proto::{
        ConnectionInfo, DeliveryHeader, Incoming, Limits, ResumeTicket, SessionId, Welcome, codec,
    };
    let dir = tempfile::tempdir().unwrap();
    let identity = signalbox_relay::Identity::load_or_create(dir.path()).unwrap();
    let configs =
        signalbox_relay::server_config(&identity, &RelayConfig::local(dir.path())).unwrap();
    let endpoint =
        quinn::Endpoint::server(configs.endpoint_default(), "127.0.0.1:0".parse().unwrap())
            .unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let session: SessionId = "stand-in".parse().unwrap();
    let relay = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let (mut control, mut hello) = conn.accept_bi().await.unwrap();
        hello.read_chunk(usize::MAX, true).await.unwrap();
        let me = ConnectionInfo {
            id: ConnectionId::random(),
            name: "me".into(),
            role: Role::Publisher,
            data: String::new(),
            joined_at: 0,
        };
        let welcome = RelayMessage::Welcome(Welcome {
            resume: ResumeTicket {
                connection: me.id,
                secret: [7; 16],
            },
            me,
            peers: Vec::new(),
            limits: Limits::default(),
            accepted_up_to: 0,
        });
        control
            .write_all(&codec::frame(&welcome, 1 << 20).unwrap())
            .await
            .unwrap();
        // The first stream is opened and never written; the second has its header and three
        // signals in one write, so the client reads them with the header.
        let first = conn.open_uni().await.unwrap();
        let mut second = conn.open_uni().await.unwrap();
        let from = Some(ConnectionId::random());
        let mut bytes = codec::frame(&DeliveryHeader { from }, 64).unwrap();
        for seq in 1..=3 {
            let signal = Incoming {
                seq,
                to_all: true,
                r#type: "t".into(),
                data: format!("signal {seq}").into(),
            };
            bytes.extend_from_slice(&codec::frame(&signal, 1024).unwrap());
        }
        second.write_all(&bytes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.close(quinn::VarInt::from_u32(CloseCode::Normal.as_u32()), b"bye");
        drop(first);
        conn.closed().await;
    });
    let mut options =
        ConnectOptions::new("127.0.0.1", port, session).with_fingerprint(identity.fingerprint);
    options.reconnect = false;
    let (_client, mut events) = Client::connect(options).await.unwrap();
    let got = signals(&mut events, 3).await;
    assert_eq!(
        got.iter().map(|s| &*s.data).collect::<Vec<_>>(),
        ["signal 1", "signal 2", "signal 3"]
    );
    relay.await.unwrap();
}
