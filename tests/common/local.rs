//! What the tests take from the machine itself: the built `signalbox` binary as a child
//! process whose output lines arrive on a channel, and free loopback ports.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long a test waits for a line of output or an exit.
const WAIT: Duration = Duration::from_secs(15);

/// The built `signalbox` binary with its own home and quiet logs.
pub fn bin(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    c.env("SIGNALBOX_HOME", home).env("RUST_LOG", "warn");
    c
}

/// `signalbox relay` on a free loopback port, without HTTP; callers add the rest.
pub fn relay_cmd(home: &std::path::Path) -> Command {
    let mut c = bin(home);
    c.args(["relay", "--listen", "127.0.0.1:0", "--http", "off"]);
    c
}

/// A running process whose stdout lines arrive on a channel.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    pub fn line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line of output")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.line()).unwrap()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ends it at once, without a word to anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free UDP port on loopback (an mDNS port of a test's own).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
