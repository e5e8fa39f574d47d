//! The desktop app driven through its UI (egui_kittest: widgets found by label and role),
//! with its real backend thread, against a real relay in this process and real participants
//! made with the client crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use signalbox_client::discovery::{Discovery, NearbyRelay};
use signalbox_client::{Client, ConnectOptions, Event, Events, ReceivedSignal, Signal};
use signalbox_desktop::SignalboxApp;
use signalbox_desktop::backend::Event as AppEvent;
use signalbox_desktop::settings::Settings;
use signalbox_proto::discovery::{Announcement, Trust};
use signalbox_proto::{Fingerprint, LeftReason, Role, SessionId};
use signalbox_relay::test_utils::{TestRelay, wait_for_blocking};

const WAIT: Duration = Duration::from_secs(15);

struct Env {
    rt: tokio::runtime::Runtime,
    relay: TestRelay,
}

impl Env {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let relay = rt.block_on(TestRelay::start());
        Self { rt, relay }
    }

    fn invite(&self, role: Role, name: Option<&str>) -> String {
        self.relay.invite("ui", role, name).to_string()
    }

    fn peer(&self, name: &str) -> (Client, Events) {
        let options: ConnectOptions = self.invite(Role::Publisher, Some(name)).parse().unwrap();
        self.rt.block_on(Client::connect(options)).unwrap()
    }

    /// "guest" joins with `invite`; it reports a relay that stops rather than waiting for it
    /// to return.
    fn guest(&self, invite: &signalbox_proto::Invite) -> (Client, Events) {
        let mut o = invite
            .to_string()
            .parse::<ConnectOptions>()
            .unwrap()
            .with_name("guest");
        o.reconnect = false;
        self.rt.block_on(Client::connect(o)).unwrap()
    }

    fn next_signal(&self, events: &mut Events) -> ReceivedSignal {
        self.rt.block_on(async {
            tokio::time::timeout(WAIT, async {
                loop {
                    match events.next().await {
                        Some(Event::Signal(s)) => return s,
                        Some(_) => continue,
                        None => panic!("peer disconnected"),
                    }
                }
            })
            .await
            .expect("a signal")
        })
    }

    fn no_signal(&self, events: &mut Events) {
        let got = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    if let Some(Event::Signal(s)) = events.next().await {
                        return s;
                    }
                }
            })
            .await
        });
        assert!(got.is_err(), "unexpected signal {got:?}");
    }

    fn disconnected(&self, events: &mut Events) -> LeftReason {
        self.rt.block_on(async {
            tokio::time::timeout(WAIT, async {
                loop {
                    match events.next().await {
                        Some(Event::Disconnected { reason, .. }) => return reason,
                        Some(_) => continue,
                        None => panic!("events ended"),
                    }
                }
            })
            .await
            .expect("a disconnect")
        })
    }
}

/// The app, with a hosted relay's files under `home` (never the real home directory).
fn app(home: &tempfile::TempDir) -> Harness<'static, SignalboxApp> {
    let mut app = SignalboxApp::new(Settings::default());
    app.state.host.data_dir = Some(home.path().to_owned());
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut SignalboxApp| app.show(ui), app)
}

/// The window's default size (`signalbox_desktop::run`).
const DEFAULT_SIZE: egui::Vec2 = egui::vec2(1180.0, 720.0);

/// The app at the window's default size.
fn app_at_default_size(home: &tempfile::TempDir) -> Harness<'static, SignalboxApp> {
    let mut app = SignalboxApp::new(Settings::default());
    app.state.host.data_dir = Some(home.path().to_owned());
    Harness::builder()
        .with_size(DEFAULT_SIZE)
        .build_ui_state(|ui, app: &mut SignalboxApp| app.show(ui), app)
}

/// Whether the widget labelled `label` is wholly inside the window.
fn in_view(h: &Harness<'_, SignalboxApp>, label: &str) -> bool {
    let r = h.get_by_label(label).rect();
    egui::Rect::from_min_size(egui::Pos2::ZERO, DEFAULT_SIZE).contains_rect(r)
}

/// Steps the UI until `cond` holds (the backend works on its own thread meanwhile).
fn wait_for(h: &mut Harness<'_, SignalboxApp>, what: &str, cond: impl Fn(&SignalboxApp) -> bool) {
    wait_for_blocking(what, WAIT, || {
        h.step();
        cond(h.state())
    });
    h.step();
}

/// Clicks the widget labelled `label` and lets the UI handle it (and redraw).
fn click(h: &mut Harness<'_, SignalboxApp>, label: &str) {
    // A person scrolls to what is below the fold before clicking it.
    h.get_by_label(label).scroll_to_me();
    // Scrolling is animated: let it settle.
    for _ in 0..30 {
        h.step();
    }
    h.get_by_label(label).click();
    h.step();
    h.step();
}

fn type_into(h: &mut Harness<'_, SignalboxApp>, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.step();
    h.get_by_label(label).type_text(text);
    h.step();
}

/// Joins through the join screen: paste the invite, name, click Join.
fn join(h: &mut Harness<'_, SignalboxApp>, invite: &str, name: &str) {
    type_into(h, "Invite", invite);
    type_into(h, "Your name", name);
    click(h, "Join");
    wait_for(h, "the app to join", SignalboxApp::is_joined);
}

trait Joined {
    fn is_joined(&self) -> bool;
}

impl Joined for SignalboxApp {
    fn is_joined(&self) -> bool {
        self.state.is_connected()
    }
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn join_by_invite_then_broadcast_from_the_composer_and_receive_into_log_and_chat() {
    let env = Env::new();
    let (bob, mut bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app(&home);
    click(&mut h, "Or enter the relay's details");
    h.check_accessibility();
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    h.check_accessibility();
    assert_eq!(h.state().state.me.as_ref().unwrap().name, "alice");
    h.get_by_label("bob"); // in the participant list
    h.get_by_label("alice (you)");

    // A broadcast typed in the composer reaches bob.
    type_into(&mut h, "Type", "note");
    type_into(&mut h, "Data", "hello everyone");
    click(&mut h, "Send");
    let s = env.next_signal(&mut bob_ev);
    assert_eq!(
        (&*s.r#type, &*s.data, s.to_all),
        ("note", "hello everyone", true)
    );
    assert_eq!(s.from, Some(h.state().state.me.as_ref().unwrap().id));
    wait_for(&mut h, "the relay's acceptance", |a| {
        a.state
            .log
            .shown(0)
            .is_some_and(|r| r.delivery == Some(signalbox_desktop::log::Delivery::Accepted))
    });

    // Bob's chat message shows in the log and in the chat view.
    env.rt
        .block_on(bob.send(Signal::to_all("chat", "hi alice")))
        .unwrap();
    wait_for(&mut h, "bob's chat in the log", |a| {
        (0..a.state.log.shown_len()).any(|i| a.state.log.shown(i).unwrap().data == "hi alice")
    });
    h.get_by_label("hi alice");
    click(&mut h, "Chat");
    h.get_by_label("hi alice");
    // Alice's app answered with a read receipt, automatically. Bob also gets his own
    // broadcast back; the two come from different senders, so in either order.
    let two = [env.next_signal(&mut bob_ev), env.next_signal(&mut bob_ev)];
    let echo = two.iter().find(|s| s.r#type == "chat").expect("bob's echo");
    let receipt = two
        .iter()
        .find(|s| s.r#type == "chat-read")
        .expect("alice's receipt");
    assert_eq!(echo.from, Some(bob.me().id));
    assert_eq!(receipt.from, Some(h.state().state.me.as_ref().unwrap().id));
    assert_eq!(
        receipt.data,
        echo.seq.to_string(),
        "names the message it acknowledges"
    );
}

#[test]
fn a_targeted_send_reaches_only_its_target() {
    let env = Env::new();
    let (_bob, mut bob_ev) = env.peer("bob");
    let (_carol, mut carol_ev) = env.peer("carol");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    // Clicking a name in the participant list addresses the composer to that person.
    click(&mut h, "bob");
    type_into(&mut h, "Type", "dm");
    type_into(&mut h, "Data", "only for bob");
    click(&mut h, "Send");
    let s = env.next_signal(&mut bob_ev);
    assert_eq!((&*s.data, s.to_all), ("only for bob", false));
    env.no_signal(&mut carol_ev);
    assert_eq!(h.state().state.log.shown(0).unwrap().target, "bob");
}

#[test]
fn an_invalid_type_shows_the_rule_and_sends_nothing() {
    let env = Env::new();
    let (_bob, mut bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    type_into(&mut h, "Type", "bad type!");
    h.get_by_label_contains("type may only contain A-Z a-z 0-9 - _ ~");
    click(&mut h, "Send");
    env.no_signal(&mut bob_ev);
    assert!(h.state().state.log.is_empty(), "nothing was sent");
    // Too much data shows the limit.
    click(&mut h, "Type");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.key_press(egui::Key::Backspace);
    h.step();
    let long = "x".repeat(9000);
    type_into(&mut h, "Data", &long);
    h.get_by_label_contains("the limit is 8192");
}

#[test]
fn control_pad_buttons_and_keys_send_their_signals() {
    let env = Env::new();
    let (_bob, mut bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    click(&mut h, "⬆ Forward");
    let s = env.next_signal(&mut bob_ev);
    assert_eq!((&*s.r#type, &*s.data), ("robot", "forward"));
    // With no text field focused, the bound key presses the button.
    h.key_press(egui::Key::ArrowLeft);
    h.step();
    h.step();
    let s = env.next_signal(&mut bob_ev);
    assert_eq!(s.data, "left");
}

#[test]
fn a_moderator_removes_a_participant() {
    let env = Env::new();
    let (_bob, mut bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Moderator, None), "mod");
    click(&mut h, "Remove");
    // Nothing happens before the moderator confirms.
    h.get_by_label_contains("Remove bob?");
    assert_eq!(h.state().state.peers.len(), 1);
    click(&mut h, "Cancel");
    assert!(h.query_by_label_contains("Remove bob?").is_none());
    click(&mut h, "Remove");
    click(&mut h, "Yes, remove");
    assert_eq!(env.disconnected(&mut bob_ev), LeftReason::ForceDisconnected);
    wait_for(&mut h, "bob to leave the list", |a| {
        a.state.peers.is_empty()
    });
    assert!(
        h.query_by_label("Remove").is_none(),
        "bob is not in the list"
    );
    // The log says who removed whom.
    h.get_by_label("was removed by you");
}

#[test]
fn the_filter_hides_rows_that_do_not_match() {
    let env = Env::new();
    let (bob, _bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    env.rt.block_on(async {
        bob.send(Signal::to_all("chat", "just chatting"))
            .await
            .unwrap();
        bob.send(Signal::to_all("robot", "turn left"))
            .await
            .unwrap()
            .accepted()
            .await
            .unwrap();
    });
    wait_for(&mut h, "two rows", |a| a.state.log.len() == 2);
    h.get_by_label("just chatting");
    type_into(&mut h, "type", "robot");
    h.step();
    assert!(
        h.query_by_label("just chatting").is_none(),
        "the chat row is hidden"
    );
    h.get_by_label("turn left");
    assert_eq!(h.state().state.log.shown_len(), 1);
}

#[test]
fn read_receipts_tick_after_the_other_app_reads() {
    let env = Env::new();
    let (home1, home2) = (home(), home());
    let mut a = app(&home1);
    let mut b = app(&home2);
    join(&mut a, &env.invite(Role::Publisher, None), "ann");
    join(&mut b, &env.invite(Role::Publisher, None), "ben");
    wait_for(&mut a, "ben in ann's list", |x| x.state.peers.len() == 1);
    click(&mut a, "Chat");
    type_into(&mut a, "Message", "are you there?");
    a.key_press(egui::Key::Enter);
    a.step();
    // Ben's app shows the message and answers; ann's message ticks "read by 1".
    wait_for(&mut b, "ben receives", |x| {
        x.state.chat.iter().any(|m| m.text == "are you there?")
    });
    wait_for(&mut a, "the read receipt", |x| {
        x.state.chat.first().is_some_and(|m| m.read_by.len() == 1)
    });
    a.get_by_label_contains("read by 1");
}

#[test]
fn host_a_relay_share_its_invite_and_stop_it() {
    let env = Env::new();
    let home = home();
    let mut h = app(&home);
    h.state_mut().state.settings.host_port = 0;
    h.state_mut().state.host.loopback_only = true;
    // Announced on loopback, on an mDNS port of this test's own.
    h.state_mut().state.host.mdns_port = Some(free_udp_port());
    click(&mut h, "Host a relay on this machine…");
    click(&mut h, "Start relay");
    wait_for(&mut h, "the relay to start", |a| {
        a.state.host.running.is_some()
    });
    let info = h.state().state.host.running.clone().unwrap();
    assert!(info.announced_as.is_some());
    h.get_by_label_contains("Announced on the LAN as");
    // The participant invite first, the moderator's second, both shown whole.
    let participant = h.get_by_label(&info.invite.to_string()).rect();
    let moderator = h.get_by_label(&info.moderator_invite.to_string()).rect();
    assert!(participant.min.y < moderator.min.y);
    h.get_by_label("Copy invite");
    h.get_by_label("Copy moderator invite");
    // The web link for browsers: shown with its QR code, and it serves the web client with
    // the participants' token.
    let web = info.web_link.clone().expect("a web link");
    assert!(
        web.starts_with("http://127.0.0.1:") && web.contains("/join?session=lobby&token="),
        "{web}"
    );
    h.get_by_label(&web);
    h.get_by_label("Copy web link");
    let page = env
        .rt
        .block_on(async { reqwest::get(&web).await?.text().await })
        .unwrap();
    assert!(page.contains("/signalbox.js"), "{page}");
    h.check_accessibility();
    // The participant invite comes first, and is a publisher's.
    let (participant, _participant_ev) = env
        .rt
        .block_on(Client::connect(
            info.invite
                .to_string()
                .parse::<ConnectOptions>()
                .unwrap()
                .with_name("pat"),
        ))
        .unwrap();
    assert_eq!(participant.me().role, Role::Publisher);
    assert!(!info.open, "hosting defaults to token mode");
    // Someone else joins with the moderator invite shown.
    let (guest, mut guest_ev) = env.guest(&info.moderator_invite);
    assert_eq!(guest.me().role, Role::Moderator);
    // The app joins its own relay in one click and sees the guest.
    click(&mut h, "Join my relay");
    wait_for(&mut h, "joining my relay", |a| {
        a.state.is_connected() && a.state.peers.iter().any(|p| p.name == "guest")
    });
    click(&mut h, "Stop relay");
    assert_eq!(env.disconnected(&mut guest_ev), LeftReason::RelayShutdown);
    wait_for(&mut h, "the relay to stop", |a| {
        a.state.host.running.is_none() && !a.state.is_connected()
    });
}

#[test]
fn a_refused_join_is_shown_in_the_window() {
    let env = Env::new();
    let home = home();
    let mut h = app(&home);
    let mut invite: signalbox_proto::Invite = env.invite(Role::Publisher, None).parse().unwrap();
    invite.token = Some("not-a-token".into());
    type_into(&mut h, "Invite", &invite.to_string());
    click(&mut h, "Join");
    wait_for(&mut h, "the refusal", |a| a.state.join.error.is_some());
    // A headline a person reads, the technical text folded below.
    h.get_by_label_contains("The relay refused");
    // A bad invite is refused before any network.
    h.state_mut().state.join.invite.clear();
    type_into(&mut h, "Invite", "https://example.com/nope");
    click(&mut h, "Join");
    h.get_by_label_contains("signalbox://");
}

/// The log draws only the rows in view: with 100 000 rows, a frame stays fast and the
/// accessibility tree holds a screenful of rows, not 100 000.
#[test]
fn the_log_stays_virtualised_with_100_000_rows() {
    let env = Env::new();
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    for i in 0..100_000u64 {
        h.state_mut().state.log.push(signalbox_desktop::log::Row {
            number: 0,
            time: "00:00:00.000".into(),
            direction: signalbox_desktop::log::Direction::In { from: None },
            sender: "relay".into(),
            target: "everyone".into(),
            r#type: "bulk".into(),
            data: format!("row {i}"),
            delivery: None,
            seq: Some(i + 1),
        });
    }
    h.step();
    let start = Instant::now();
    const FRAMES: u32 = 30;
    for _ in 0..FRAMES {
        h.step();
    }
    let per_frame = start.elapsed() / FRAMES;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("log with 100 000 rows: {per_frame:?} per frame ({build} build, no rendering)");
    // Auto-scroll shows the newest rows; only a screenful exists as widgets.
    h.get_by_label("row 99999");
    assert!(h.query_by_label("row 50000").is_none());
    assert!(h.query_all_by_label_contains("row ").count() < 100);
}

#[test]
fn a_join_in_progress_shows_progress_and_can_be_cancelled() {
    // A UDP port with nobody behind it: the QUIC handshake never completes.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let home = home();
    let mut h = app(&home);
    click(&mut h, "Or enter the relay's details");
    type_into(&mut h, "Relay address", &format!("127.0.0.1:{port}"));
    type_into(&mut h, "Session", "lobby");
    type_into(&mut h, "Fingerprint", &"ab".repeat(32));
    click(&mut h, "Join");
    wait_for(&mut h, "connecting", |a| {
        matches!(
            a.state.conn,
            signalbox_desktop::state::ConnState::Connecting { .. }
        )
    });
    // Shown on the join screen and in the status bar.
    assert_eq!(
        h.query_all_by_label_contains("Connecting to 127.0.0.1:")
            .count(),
        2
    );
    click(&mut h, "Cancel");
    wait_for(&mut h, "the cancel", |a| {
        a.state.join.error.as_deref() == Some("cancelled")
    });
    assert!(!h.state().state.is_connected());
    h.get_by_label("Join");
}

#[test]
fn several_targets_and_ctrl_enter() {
    let env = Env::new();
    let (_bob, mut bob_ev) = env.peer("bob");
    let (_carol, mut carol_ev) = env.peer("carol");
    let (_dave, mut dave_ev) = env.peer("dave");
    let home = home();
    let mut h = app(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    click(&mut h, "Several");
    // The checkboxes of the "Several" choice (the people list shows the same names as
    // selectable labels, so pick the checkboxes by role).
    for name in ["bob", "carol"] {
        h.get_by_role_and_label(egui::accesskit::Role::CheckBox, name)
            .click();
        h.step();
        h.step();
    }
    type_into(&mut h, "Type", "team");
    type_into(&mut h, "Data", "bob and carol only");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.step();
    h.step();
    for ev in [&mut bob_ev, &mut carol_ev] {
        let s = env.next_signal(ev);
        assert_eq!((&*s.data, s.to_all), ("bob and carol only", false));
    }
    env.no_signal(&mut dave_ev);
    let target = &h.state().state.log.shown(0).unwrap().target;
    assert!(target == "bob, carol" || target == "carol, bob", "{target}");
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A relay as LAN discovery reports it.
fn nearby(name: &str, fp: Fingerprint, port: u16, open: bool, session: &str) -> NearbyRelay {
    let mut announcement = Announcement::new(name, fp, open);
    announcement.sessions = vec![SessionId::new(session).unwrap()];
    NearbyRelay {
        instance: format!("{name}._signalbox._udp.local."),
        announcement,
        addresses: vec![[127, 0, 0, 1].into()],
        port,
    }
}

/// The join screen's nearby list, fed from a fake discovery feed: new, known and changed
/// relays; a changed fingerprint is marked and cannot be used until the user confirms; "Fill
/// in" fills the form; "Join now" joins an open relay (a real one) pinning its fingerprint
/// and remembers it; a relay that goes away leaves the list.
#[test]
fn nearby_relays_are_listed_with_trust_on_first_use() {
    let env = Env::new();
    let open_relay = env.rt.block_on(TestRelay::start_with(|c| c.open = true));
    let home = home();
    let mut h = app(&home);
    h.get_by_label("Looking for relays on your network…");
    let lab = nearby(
        "Lab",
        open_relay.handle.fingerprint(),
        open_relay.handle.quic_addr().port(),
        true,
        "robots",
    );
    let office = nearby("Office", Fingerprint([2; 32]), 4433, false, "lobby");
    let hall = nearby("Robot hall", Fingerprint([3; 32]), 4434, false, "lobby");
    {
        let st = &mut h.state_mut().state;
        st.settings
            .known_relays
            .remember("Office", Fingerprint([2; 32]));
        st.settings
            .known_relays
            .remember("Robot hall", Fingerprint([9; 32]));
        for r in [&hall, &office, &lab] {
            st.apply(AppEvent::Nearby(Discovery::Found(r.clone())));
        }
    }
    h.step();
    h.step();
    h.get_by_label("Nearby relays");
    h.get_by_label("Lab");
    h.get_by_label("new");
    h.get_by_label("✔ known");
    h.get_by_label("⚠ fingerprint changed");
    h.get_by_label(&format!("fp {}", lab.announcement.fingerprint.short()));
    h.check_accessibility();
    // The changed relay offers nothing but confirming; the open one can be joined at once.
    assert_eq!(h.query_all_by_label("Fill in").count(), 2);
    assert_eq!(h.query_all_by_label("Join now").count(), 1);
    click(&mut h, "Trust the new fingerprint…");
    click(&mut h, "Trust the new fingerprint");
    assert_eq!(h.query_all_by_label("Fill in").count(), 3);
    assert_eq!(
        h.state()
            .state
            .settings
            .known_relays
            .check("Robot hall", &Fingerprint([3; 32])),
        Trust::Known
    );

    // "Fill in" on the office relay (the second, by name) fills the form.
    h.query_all_by_label("Fill in").nth(1).unwrap().click();
    h.step();
    h.step();
    {
        let join = &h.state().state.join;
        assert_eq!(join.address, "127.0.0.1:4433");
        assert_eq!(join.session, "lobby");
        assert_eq!(join.fingerprint, Fingerprint([2; 32]).to_string());
    }
    h.get_by_label("Relay address");

    // "Join now" on the open relay joins its published session, pinning its fingerprint.
    click(&mut h, "Join now");
    wait_for(&mut h, "joining the nearby relay", SignalboxApp::is_joined);
    assert_eq!(h.state().state.session.as_ref().unwrap().as_str(), "robots");
    assert_eq!(
        h.state()
            .state
            .settings
            .known_relays
            .check("Lab", &open_relay.handle.fingerprint()),
        Trust::Known
    );
    // A relay that goes away leaves the list.
    h.state_mut().state.apply(AppEvent::Nearby(Discovery::Gone {
        instance: office.instance.clone(),
    }));
    assert_eq!(h.state().state.nearby.len(), 2);
}

/// Closing the window leaves the session: peers see `clientDisconnected` at once, not a
/// ghost that lingers until the relay's timeouts.
#[test]
fn closing_the_window_leaves_the_session() {
    let env = Env::new();
    let home = home();
    let mut h = app(&home);
    let (_peer, mut peer_ev) = env.peer("bob");
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    let alice = h.state().state.me.clone().unwrap().id;
    let started = std::time::Instant::now();
    drop(h);
    let reason = env.rt.block_on(async {
        tokio::time::timeout(WAIT, async {
            loop {
                match peer_ev.next().await {
                    Some(Event::Left { peer, reason }) if peer.id == alice => return reason,
                    Some(_) => continue,
                    None => panic!("events ended"),
                }
            }
        })
        .await
        .expect("alice leaving")
    });
    assert_eq!(reason, LeftReason::ClientDisconnected);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A file dropped on the window, as winit hands it over.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Issue: pasting large data pushed Send, the counter and the limit error out of view (and
/// 9000 bytes of one unbroken string made the composer vanish). The data box scrolls inside a
/// bounded height; the composer keeps its height; a file can be attached, its size checked.
#[test]
fn large_data_keeps_the_composer_in_view_and_files_attach() {
    let env = Env::new();
    let home = home();
    let mut h = app_at_default_size(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    let send_before = h.get_by_label("Send").rect();
    let type_before = h.get_by_label("Type").rect();
    for data in ["x".repeat(9000), "line of text\n".repeat(700)] {
        h.state_mut().state.composer.data = data;
        h.run();
        assert!(in_view(&h, "Send"), "Send stays in view");
        assert!(in_view(&h, "Ping"));
        assert_eq!(h.get_by_label("Send").rect(), send_before, "nothing moved");
        assert_eq!(
            h.get_by_label("Type").rect(),
            type_before,
            "nothing moved above either"
        );
        let limit = h.get_by_label_contains("the limit is 8192");
        assert!(
            egui::Rect::from_min_size(egui::Pos2::ZERO, DEFAULT_SIZE).contains_rect(limit.rect()),
            "the limit error is visible"
        );
        h.get_by_label_contains("Connected to");
    }
    // A file too large is refused before it is read; a small one becomes the data.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, "y".repeat(9000)).unwrap();
    h.state_mut().state.composer.data.clear();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(big.clone())));
    h.run();
    h.get_by_label_contains("big.json is 9000 bytes; the limit is 8192");
    assert!(h.state().state.composer.data.is_empty());
    let small = dir.path().join("pose.json");
    std::fs::write(&small, r#"{"x":1,"y":2}"#).unwrap();
    click(&mut h, "Attach file…");
    type_into(&mut h, "File", small.to_str().unwrap());
    click(&mut h, "Attach");
    assert_eq!(h.state().state.composer.data, r#"{"x":1,"y":2}"#);
    assert_eq!(
        h.get_by_label("Send").rect(),
        send_before,
        "still nothing moved"
    );
}

/// Issue: the control pad editor was clipped at the default size (the fifth card cut, "Add
/// button" out of reach). It scrolls.
#[test]
fn the_pad_editor_scrolls_to_add_button() {
    let env = Env::new();
    let home = home();
    let mut h = app_at_default_size(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    click(&mut h, "Edit");
    let before = h.state().state.settings.pad.len();
    assert!(!in_view(&h, "Add button"), "below the fold at first");
    h.get_by_label("Add button").scroll_to_me();
    h.run();
    assert!(in_view(&h, "Add button"), "reachable by scrolling");
    click(&mut h, "Add button");
    assert_eq!(h.state().state.settings.pad.len(), before + 1);
}

/// Issue: opening the Host panel hid the Data column. At the default size, with the host
/// panel open, Data is in view; clicking a row opens its whole data, pretty when JSON, with
/// Copy.
#[test]
fn the_data_column_stays_and_a_row_opens_its_details() {
    let env = Env::new();
    let (bob, _bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app_at_default_size(&home);
    h.state_mut().state.host.visible = true;
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    env.rt
        .block_on(bob.send(Signal::to_all("pose", r#"{"x":1,"y":[2,3]}"#)))
        .unwrap();
    wait_for(&mut h, "bob's signal", |a| !a.state.log.is_empty());
    // The column's header and the composer's field are both labelled "Data": both in view.
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, DEFAULT_SIZE);
    let data: Vec<egui::Rect> = h.get_all_by_label("Data").map(|n| n.rect()).collect();
    assert_eq!(data.len(), 2);
    assert!(
        data.iter()
            .all(|r| window.contains_rect(*r) && r.width() > 25.0),
        "the Data column is in view: {data:?}"
    );
    // The data itself is in view, not cut at the panel's edge.
    let cell = h.get_by_label_contains(r#"{"x":1"#).rect();
    assert!(window.contains_rect(cell), "the data is in view: {cell:?}");
    let central_right = h.get_by_label("Control pad").rect().min.x;
    assert!(
        cell.max.x <= central_right,
        "{cell:?} reaches under the pad at {central_right}"
    );
    h.get_by_label_contains(r#"{"x":1"#).click();
    h.run();
    h.get_by_label("Signal details");
    h.get_by_label("Copy data");
    // Pretty-printed.
    h.get_by_label_contains("\"y\": [");
}

/// Joins and leaves are lines of the log, filterable like signals; a transient notice goes
/// by itself; leaving on purpose is not shown as an error.
#[test]
fn presence_in_the_log_notices_expire_and_leaving_is_not_an_error() {
    let env = Env::new();
    let home = home();
    let mut h = app_at_default_size(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    let (carol, _c) = env.peer("carol");
    wait_for(&mut h, "carol's join", |a| {
        a.state.peers.iter().any(|p| p.name == "carol")
    });
    // Carol is chosen as the recipient, then leaves: the composer goes back to everyone,
    // saying so quietly (not a red "choose who to send to").
    let carol_id = carol.me().id;
    h.state_mut().state.composer.target =
        signalbox_desktop::state::TargetChoice::One(Some(carol_id));
    env.rt.block_on(carol.leave());
    wait_for(&mut h, "carol's leave", |a| a.state.peers.is_empty());
    assert_eq!(
        h.state().state.composer.target,
        signalbox_desktop::state::TargetChoice::Everyone
    );
    h.get_by_label("carol left; signals go to everyone now");
    assert!(h.query_by_label("choose who to send to").is_none());
    h.get_by_label("joined (publisher)");
    h.get_by_label("left (clientDisconnected)");
    type_into(&mut h, "text", "left");
    assert_eq!(h.state().state.log.shown_len(), 1);
    // "Copied"-style notices go away by themselves.
    h.state_mut().state.notify("Invite copied.");
    h.run();
    h.get_by_label("Invite copied.");
    h.state_mut().state.notice_until = Some(Instant::now());
    h.run();
    assert!(h.query_by_label("Invite copied.").is_none());
    click(&mut h, "Leave");
    wait_for(&mut h, "leaving", |a| !a.state.is_connected());
    assert!(h.get_all_by_label("Left the session").count() >= 1);
    assert!(h.query_by_label_contains("Disconnected (").is_none());
}

/// Errors in words: a headline that says what happened and what to do, the details folded.
/// An edit clears an old error.
#[test]
fn join_errors_speak_plainly_and_clear_on_edit() {
    let env = Env::new();
    let home = home();
    let mut h = app_at_default_size(&home);
    // An invite without its fingerprint: the relay was reached, its certificate unknown.
    let mut invite: signalbox_proto::Invite = env.invite(Role::Publisher, None).parse().unwrap();
    invite.fingerprint = None;
    type_into(&mut h, "Invite", &invite.to_string());
    click(&mut h, "Join");
    wait_for(&mut h, "the failure", |a| a.state.join.error.is_some());
    h.get_by_label_contains("its certificate cannot be checked");
    h.get_by_label("Details");
    assert!(
        h.query_by_label_contains("UnknownIssuer").is_none(),
        "folded"
    );
    // Typing again clears it.
    type_into(&mut h, "Invite", " ");
    assert!(h.state().state.join.error.is_none());
    // The wrong fingerprint: one line, not four lines of hex.
    let mut wrong = invite.clone();
    wrong.fingerprint = Some(Fingerprint([7; 32]));
    h.state_mut().state.join.invite = wrong.to_string();
    click(&mut h, "Join");
    wait_for(&mut h, "the mismatch", |a| a.state.join.error.is_some());
    h.get_by_label_contains("This is not the relay you were invited to");
    h.state_mut().state.join.error = None;
    // Garbage.
    h.state_mut().state.join.invite = "hello there".into();
    click(&mut h, "Join");
    h.get_by_label_contains("That is not an invite");
    // Both an invite and details: it says which one joins.
    h.state_mut().state.join.invite = invite.to_string();
    h.state_mut().state.join.address = "127.0.0.1:4433".into();
    h.run();
    h.get_by_label_contains("joins with the invite (the details below are not used)");
}

/// Chat as chat apps have it: "To:" before the choice, one header for consecutive messages of
/// one sender, hh:mm.
#[test]
fn chat_groups_a_senders_messages() {
    let env = Env::new();
    let (bob, _bob_ev) = env.peer("bob");
    let home = home();
    let mut h = app_at_default_size(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    for text in ["one", "two", "three"] {
        env.rt
            .block_on(bob.send(Signal::to_all("chat", text)))
            .unwrap();
    }
    wait_for(&mut h, "bob's messages", |a| a.state.chat.len() == 3);
    click(&mut h, "Chat");
    h.get_by_label("three");
    assert_eq!(
        h.get_all_by_label("bob").count(),
        2,
        "one header for bob's three messages (and bob in the people list)"
    );
    h.get_by_label("To:");
    let time = &h.state().state.chat[0].time;
    h.get_by_label(&time[..5]);
}

/// The `signalbox` binary a background relay runs (built by `cargo test --workspace`).
fn signalbox_exe() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let exe = target.join("debug/signalbox");
    assert!(
        exe.is_file(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        exe.display()
    );
    exe
}

/// The app, set to host on loopback (any port, not announced), in the background or not.
fn app_hosting_on_loopback(
    home: &tempfile::TempDir,
    background: bool,
) -> Harness<'static, SignalboxApp> {
    let mut h = app_at_default_size(home);
    let st = &mut h.state_mut().state;
    st.host.exe = Some(signalbox_exe());
    st.host.loopback_only = true;
    st.settings.host_port = 0;
    st.settings.host_announce = false;
    st.settings.host_background = background;
    h
}

/// Hosting that outlives the window: the Host panel starts the relay as a process of its
/// own; closing the window leaves it running; the next app finds it (through its REST API,
/// with a token from the same data directory) and shows its people, removes one, stops it.
#[test]
fn hosting_in_the_background_outlives_the_window() {
    let env = Env::new();
    let home = home();
    let mut h = app_hosting_on_loopback(&home, true);
    click(&mut h, "Host a relay on this machine…");
    click(&mut h, "Start relay");
    wait_for(&mut h, "the background relay", |a| {
        a.state.host.background.is_some()
    });
    h.get_by_label_contains("Running in the background");
    let view = h.state().state.host.background.clone().unwrap();
    let pid = view.relay.pid;
    assert_ne!(pid, std::process::id(), "a process of its own");
    let (guest, mut guest_ev) = env.guest(&view.invite);
    assert_eq!(guest.me().role, Role::Publisher);
    wait_for(&mut h, "the guest in the panel", |a| {
        a.state
            .host
            .background
            .as_ref()
            .is_some_and(|b| b.people.iter().any(|p| p.name == "guest"))
    });
    // The window closes; the relay stays.
    drop(h);
    std::thread::sleep(Duration::from_millis(500));
    assert!(guest.is_connected(), "the relay outlived the window");
    // The next app finds it.
    let mut h = app_at_default_size(&home);
    h.state_mut().state.host.visible = true;
    h.state_mut()
        .command(signalbox_desktop::backend::Command::FindBackground {
            data_dir: Some(home.path().to_owned()),
            session: "lobby".into(),
        });
    wait_for(&mut h, "the relay found again", |a| {
        a.state
            .host
            .background
            .as_ref()
            .is_some_and(|b| b.relay.pid == pid && !b.people.is_empty())
    });
    h.get_by_label("guest");
    click(&mut h, "Remove");
    click(&mut h, "Yes, remove");
    assert_eq!(
        env.disconnected(&mut guest_ev),
        LeftReason::ForceDisconnected
    );
    click(&mut h, "Stop relay");
    wait_for(&mut h, "the relay to stop", |a| {
        a.state.host.background.is_none()
    });
    assert!(
        signalbox_relay::tokens::RunningRelay::read(home.path()).is_none(),
        "it stopped and forgot its record"
    );
}

/// Closing the window while hosting asks; "Keep hosting in the background" moves the relay
/// to a process of its own on the same port, so the invites handed out keep working.
#[test]
fn closing_while_hosting_asks_and_can_keep_hosting() {
    let env = Env::new();
    let home = home();
    let mut h = app_hosting_on_loopback(&home, false);
    click(&mut h, "Host a relay on this machine…");
    click(&mut h, "Start relay");
    wait_for(&mut h, "the relay to start", |a| {
        a.state.host.running.is_some()
    });
    let info = h.state().state.host.running.clone().unwrap();
    // The window is asked to close.
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    h.run();
    h.get_by_label("Keep hosting?");
    click(&mut h, "Keep hosting in the background");
    wait_for(&mut h, "the move", |a| {
        a.state.host.background.is_some() && a.state.host.running.is_none()
    });
    let view = h.state().state.host.background.clone().unwrap();
    assert_eq!(
        view.relay.quic.port(),
        info.quic_addr.port(),
        "the same port"
    );
    // An invite handed out before still works.
    let (guest, _) = env
        .rt
        .block_on(Client::connect(
            info.invite.to_string().parse::<ConnectOptions>().unwrap(),
        ))
        .unwrap();
    assert!(guest.is_connected());
    env.rt.block_on(guest.leave());
    click(&mut h, "Stop relay");
    wait_for(&mut h, "the relay to stop", |a| {
        a.state.host.background.is_none()
    });
}

/// A one-shot sender's signal often arrives after its `left` (presence and signals travel on
/// different streams): the log still names it.
#[test]
fn a_one_shot_senders_signal_shows_its_name() {
    let env = Env::new();
    let home = home();
    let mut h = app_at_default_size(&home);
    join(&mut h, &env.invite(Role::Publisher, None), "alice");
    let (script, _ev) = env.peer("script");
    env.rt.block_on(async {
        script
            .send(Signal::to_all("robot", "forward"))
            .await
            .unwrap()
            .accepted()
            .await
            .unwrap();
        script.leave().await;
    });
    wait_for(&mut h, "the signal", |a| {
        (0..a.state.log.shown_len())
            .any(|i| a.state.log.shown(i).is_some_and(|r| r.data == "forward"))
    });
    let row = (0..h.state().state.log.shown_len())
        .filter_map(|i| h.state().state.log.shown(i).cloned())
        .find(|r| r.data == "forward")
        .unwrap();
    assert_eq!(row.sender, "script");
}
