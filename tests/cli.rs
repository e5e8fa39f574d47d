//! The built `signalbox` binary, driven as a script would: `relay`, `listen --json`,
//! `send --lines`, errors and exit codes, `token`, `invite`, `kick`, and shutdown on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/local.rs"]
mod local;

use std::io::Write;
use std::process::{Command, Stdio};

use local::{Proc, bin, free_udp_port, relay_cmd};
use serde_json::Value;

/// Starts `signalbox relay` on a free loopback port and reads its announcement.
fn relay(home: &std::path::Path) -> (Proc, String, String) {
    let mut cmd = relay_cmd(home);
    cmd.args(["--session", "cli"]);
    let p = Proc::spawn(cmd);
    let quic = p.line();
    assert!(quic.starts_with("quic: 127.0.0.1:"), "{quic}");
    let fp = p.line();
    assert!(
        fp.starts_with("fingerprint: ") && fp.len() == 13 + 64,
        "{fp}"
    );
    assert_eq!(p.line(), "http: off");
    assert_eq!(p.line(), "mode: token");
    let invite = p.line();
    let invite = invite
        .strip_prefix("moderator invite: ")
        .expect("invite line")
        .to_owned();
    assert!(invite.starts_with("signalbox://127.0.0.1:"), "{invite}");
    (p, invite, fp[13..].to_owned())
}

/// Where the relay's port is in `invite` (a byte range).
fn port_in(invite: &str) -> std::ops::Range<usize> {
    let host = "127.0.0.1:";
    let at = invite.find(host).expect("invite has the relay's address") + host.len();
    let digits = invite[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
    at..at + digits
}

/// The same invite, pointed at `port` on loopback instead.
fn repointed(invite: &str, port: u16) -> String {
    let at = port_in(invite);
    format!("{}{port}{}", &invite[..at.start], &invite[at.end..])
}

/// Sends `signal` (`INT`, `TERM`, …) to process `pid`.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A `listen --json` named `ears` on `invite`, and its first line.
fn ears(home: &std::path::Path, invite: &str) -> (Proc, String) {
    let mut cmd = bin(home);
    cmd.args(["listen", "--invite", invite, "--json", "--name", "ears"]);
    let ears = Proc::spawn(cmd);
    let first = ears.line();
    (ears, first)
}

#[test]
fn relay_listen_send_lines_end_to_end() {
    let home = tempfile::tempdir().unwrap();
    let (mut relay, invite, _) = relay(home.path());

    let mut listen = bin(home.path());
    listen.args([
        "listen", "--invite", &invite, "--json", "--count", "3", "--name", "ears",
    ]);
    let mut listener = Proc::spawn(listen);
    let connected = listener.json();
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["me"]["name"], "ears");
    assert_eq!(connected["session"], "cli");

    let mut send = bin(home.path());
    send.args([
        "send", "--invite", &invite, "--type", "robot", "--lines", "--name", "script",
    ])
    .stdin(Stdio::piped());
    let mut sender = send.spawn().unwrap();
    sender
        .stdin
        .take()
        .unwrap()
        .write_all(b"forward\nleft\nstop\n")
        .unwrap();
    assert!(
        sender.wait().unwrap().success(),
        "send exits 0 once every line is accepted"
    );

    let joined = listener.json();
    assert_eq!(
        (joined["event"].as_str(), joined["name"].as_str()),
        (Some("joined"), Some("script"))
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        let s = listener.json();
        // Presence (the script leaving) travels on another stream than its signals, so it
        // may come before them: order is promised per sender's signals only.
        if s["event"] == "left" {
            continue;
        }
        assert_eq!(s["event"], "signal");
        assert_eq!(
            s["from"], joined["connection"],
            "stamped with the sender's id"
        );
        assert_eq!(s["from_name"], "script");
        assert_eq!(s["type"], "robot");
        assert_eq!(s["to_all"], true);
        got.push((
            s["seq"].as_u64().unwrap(),
            s["data"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (1, "forward".into()),
            (2, "left".into()),
            (3, "stop".into())
        ],
        "one signal per line, in order"
    );
    assert!(
        listener.wait().success(),
        "listen --count 3 exits 0 after three signals"
    );

    // Graceful stop on SIGTERM.
    send_signal(relay.id(), "TERM");
    assert!(relay.wait().success());
}

/// Waits for `who`'s `left` line on `ears` and returns its reason and how long it took.
fn left_of(ears: &Proc, who: &Value) -> (String, std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        let line = ears.json();
        if line["event"] == "left" && line["connection"] == *who {
            return (line["reason"].as_str().unwrap().to_owned(), start.elapsed());
        }
    }
}

/// Waits for the next `joined` line on `ears`; returns the connection id.
fn joined_id(ears: &Proc) -> Value {
    loop {
        let line = ears.json();
        if line["event"] == "joined" {
            return line["connection"].clone();
        }
    }
}

/// A stopped `listen` or `send` leaves at once: peers see `clientDisconnected` (not, after
/// the relay's timeouts, `networkDisconnected` — a ghost for ~50 s).
#[test]
fn listen_and_send_leave_when_stopped() {
    let home = tempfile::tempdir().unwrap();
    let (_relay, invite, _) = relay(home.path());
    let (ears, connected) = ears(home.path(), &invite);
    assert!(
        connected.starts_with(r#"{"event":"connected","#),
        "event comes first: {connected}"
    );

    // listen, stopped by Ctrl-C (SIGINT) and by SIGTERM.
    for signal in ["INT", "TERM"] {
        let mut cmd = bin(home.path());
        cmd.args(["listen", "--invite", &invite, "--json", "--name", "ghost"]);
        let mut ghost = Proc::spawn(cmd);
        ghost.line();
        let id = joined_id(&ears);
        send_signal(ghost.id(), signal);
        let (reason, after) = left_of(&ears, &id);
        assert_eq!(reason, "clientDisconnected", "listen on SIG{signal}");
        assert!(
            after.as_secs() < 5,
            "listen left {after:?} after SIG{signal}"
        );
        assert!(
            !ghost.wait().success(),
            "a stopped listen says it was stopped"
        );
    }

    // send --lines waiting for its input, stopped.
    let mut cmd = bin(home.path());
    cmd.args(["send", "--invite", &invite, "--lines", "--name", "script"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut sender = cmd.spawn().unwrap();
    let id = joined_id(&ears);
    send_signal(sender.id(), "INT");
    let (reason, _) = left_of(&ears, &id);
    assert_eq!(reason, "clientDisconnected", "send on SIGINT");
    assert_eq!(sender.wait().unwrap().code(), Some(130));

    // listen whose reader went away (`| head`), with nothing to print meanwhile.
    let mut cmd = bin(home.path());
    cmd.args(["listen", "--invite", &invite, "--json", "--name", "piped"])
        .stdout(Stdio::piped());
    let mut piped = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(piped.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let id = joined_id(&ears);
    drop(out);
    let (reason, after) = left_of(&ears, &id);
    assert_eq!(reason, "clientDisconnected", "listen with its reader gone");
    assert!(after.as_secs() < 5, "left {after:?} after the pipe closed");
    assert!(piped.wait().unwrap().success());
}

/// Stopped after the relay admitted it but before the relay's welcome reached it (each of
/// the relay's datagrams held up 1 s on the way), `listen` still leaves as one stopped on purpose: peers
/// see `clientDisconnected` within seconds, not a ghost until the relay's timeouts.
#[test]
fn a_stop_just_after_the_relay_admitted_it_is_a_leave() {
    let home = tempfile::tempdir().unwrap();
    let (_relay, invite, _) = relay(home.path());
    let (ears, _) = ears(home.path(), &invite);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay_port: u16 = invite[port_in(&invite)].parse().unwrap();
    let slow = runtime.block_on(signalbox_relay::test_utils::faulty::FaultyLink::start(
        (std::net::Ipv4Addr::LOCALHOST, relay_port).into(),
        7,
        signalbox_relay::test_utils::faulty::Faults {
            delay_to_clients: std::time::Duration::from_secs(1),
            ..Default::default()
        },
    ));
    let slow_invite = repointed(&invite, slow.addr().port());
    let mut cmd = bin(home.path());
    cmd.args([
        "listen",
        "--invite",
        &slow_invite,
        "--json",
        "--name",
        "late",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let late = cmd.spawn().unwrap();
    // The relay has admitted it; its welcome is a second away.
    let id = joined_id(&ears);
    send_signal(late.id(), "INT");
    let out = late.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let (reason, after) = left_of(&ears, &id);
    assert_eq!(reason, "clientDisconnected");
    assert!(after.as_secs() < 5, "left {after:?} after SIGINT");
    drop(slow);
}

/// Stopped while it is still joining (nothing answers its handshake), `listen` exits at
/// once with 128 + the signal's number and says nothing.
#[test]
fn a_stop_while_joining_exits_at_once() {
    let home = tempfile::tempdir().unwrap();
    let (_relay, invite, _) = relay(home.path());
    // The same invite, pointed at a socket that takes datagrams and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_invite = repointed(&invite, silent.local_addr().unwrap().port());
    let mut cmd = bin(home.path());
    cmd.args(["listen", "--invite", &silent_invite])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    send_signal(child.id(), "INT");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(started.elapsed().as_secs() < 3, "exits at once");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn send_reports_errors_with_their_codes() {
    let home = tempfile::tempdir().unwrap();
    let (_relay, invite, _) = relay(home.path());

    let big = "x".repeat(9000);
    let out = bin(home.path())
        .args(["send", "--invite", &invite, "--data", &big])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error 413: data is 9000 bytes; the limit is 8192"),
        "{err}"
    );

    let out = bin(home.path())
        .args(["send", "--invite", &invite, "--type", "no spaces"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error 400: type may only contain A-Z a-z 0-9 - _ ~"),
        "{err}"
    );

    let out = bin(home.path())
        .args([
            "send",
            "--invite",
            &invite,
            "--to",
            "67e55044-10b1-426f-9247-bb680e5fe0c8",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error 404"), "{err}");

    // A bad invite fails before any network.
    let out = bin(home.path())
        .args(["send", "--invite", "https://nope/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signalbox://"));
}

#[test]
fn token_invite_and_kick_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    let (_relay, mod_invite, fp) = relay(home.path());

    // A subscriber token from the relay's data dir, turned into an invite by hand.
    let out = bin(home.path())
        .args([
            "token",
            "--session",
            "cli",
            "--role",
            "subscriber",
            "--name",
            "watcher",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let base = mod_invite.split('?').next().unwrap();
    let sub_invite = format!("{base}?fp={fp}&token={token}");

    // `invite` prints the same relay's fingerprint.
    let out = bin(home.path())
        .args(["invite", "--session", "cli", "--host", "127.0.0.1:1"])
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.starts_with(&format!("signalbox://127.0.0.1:1/cli?fp={fp}&token=")),
        "{printed}"
    );

    let mut watcher_cmd = bin(home.path());
    watcher_cmd.args(["listen", "--invite", &sub_invite, "--json"]);
    let mut watcher = Proc::spawn(watcher_cmd);
    let hello = watcher.json();
    assert_eq!(hello["me"]["role"], "subscriber");
    assert_eq!(hello["me"]["name"], "watcher");
    let id = hello["me"]["id"].as_str().unwrap().to_owned();

    // A subscriber may not send.
    let out = bin(home.path())
        .args(["send", "--invite", &sub_invite, "--data", "hi"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("error 403"));

    let out = bin(home.path())
        .args(["kick", "--invite", &mod_invite, &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("removed {id}")
    );
    // The watcher sees who came and went, then its own removal, and exits non-zero.
    let last = loop {
        let v = watcher.json();
        if v["event"] == "disconnected" {
            break v;
        }
    };
    assert_eq!(last["reason"], "forceDisconnected");
    assert!(!watcher.wait().success());
}

/// `signalbox relay --announce` and `signalbox discover --json` find each other (multicast on
/// loopback, on an mDNS port of the test's own).
#[test]
fn discover_lists_an_announcing_relay() {
    let home = tempfile::tempdir().unwrap();
    let mdns_port = free_udp_port().to_string();
    let mut cmd = relay_cmd(home.path());
    cmd.args([
        "--open",
        "--announce",
        "--name",
        "cli relay",
        "--announce-session",
        "cli",
        "--mdns-port",
        &mdns_port,
    ]);
    let relay = Proc::spawn(cmd);
    let quic = relay.line();
    let quic = quic.strip_prefix("quic: ").unwrap().to_owned();
    let fp = relay.line();
    let fp = fp.strip_prefix("fingerprint: ").unwrap().to_owned();
    let out = bin(home.path())
        .args([
            "discover",
            "--json",
            "--wait",
            "4s",
            "--loopback",
            "--mdns-port",
            &mdns_port,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let found: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = found
        .iter()
        .find(|r| r["fingerprint"] == fp.as_str())
        .unwrap_or_else(|| panic!("not found among {found:?}"));
    assert_eq!(ours["name"], "cli relay");
    assert_eq!(ours["address"], quic.as_str());
    assert_eq!(ours["mode"], "open");
    assert_eq!(ours["protocol"], 1);
    assert_eq!(ours["sessions"], serde_json::json!(["cli"]));
    // Nothing announced on another port: nothing found, and a clear word on stderr.
    let quiet = bin(home.path())
        .args([
            "discover",
            "--wait",
            "1s",
            "--loopback",
            "--mdns-port",
            &(mdns_port.parse::<u16>().unwrap() ^ 1).to_string(),
        ])
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty());
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("no relays found"));
}
