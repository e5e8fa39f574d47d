//! Helpers for tests of the relay and of what talks to it (feature `test-utils`): a real
//! relay on 127.0.0.1 in a temporary data directory, the tokens and invites to join it, and
//! one way to wait for something that should happen soon; and [`faulty`], a UDP proxy that
//! makes a bad network on loopback (for the reliability tests and the benchmark's lossy
//! path).
//!
//! The workspace's end-to-end tests and the desktop app's UI tests both use these, so a
//! relay is started, and a condition waited for, the same way everywhere.

pub mod faulty;

use std::time::{Duration, Instant};

use signalbox_proto::{Invite, Role, SessionId};

use crate::{Relay, RelayConfig, RelayHandle, TokenRequest};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A relay in a temporary directory (removed when dropped), serving on 127.0.0.1.
#[derive(Debug)]
pub struct TestRelay {
    pub handle: RelayHandle,
    pub dir: tempfile::TempDir,
}

impl TestRelay {
    /// A relay with the local defaults ([`RelayConfig::local`]).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A relay with the local defaults, changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut RelayConfig)) -> Self {
        // `RUST_LOG=signalbox_relay=debug cargo test` shows the relay's logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = RelayConfig::local(dir.path());
        configure(&mut config);
        let handle = Relay::spawn(config).await.expect("the relay starts");
        Self { handle, dir }
    }

    /// The session most tests use: `test`.
    pub fn session() -> SessionId {
        SessionId::new("test").expect("a valid session id")
    }

    /// A token for [`TestRelay::session`].
    pub fn token(&self, role: Role, name: &str) -> String {
        self.token_for("test", role, name)
    }

    /// A token for `session` (`*`: every session).
    pub fn token_for(&self, session: &str, role: Role, name: &str) -> String {
        self.handle
            .tokens()
            .mint(&TokenRequest {
                session: session.into(),
                role,
                name: Some(name.into()),
                ..TokenRequest::default()
            })
            .expect("a token")
    }

    /// A server token for every session (the REST API's key).
    pub fn server_token(&self) -> String {
        self.handle
            .tokens()
            .mint(&TokenRequest {
                session: "*".into(),
                role: Role::Server,
                ..TokenRequest::default()
            })
            .expect("a token")
    }

    /// An invite to `session` with a token for `role` (named `name`, or left for the client
    /// to name).
    pub fn invite(&self, session: &str, role: Role, name: Option<&str>) -> Invite {
        let token = self
            .handle
            .tokens()
            .mint(&TokenRequest {
                session: session.into(),
                role,
                name: name.map(Into::into),
                ..TokenRequest::default()
            })
            .expect("a token");
        self.handle.invite(
            SessionId::new(session).expect("a valid session id"),
            Some(token),
        )
    }
}

/// Waits until `cond` holds, polling, or panics after [`WAIT`] naming `what`.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_for`] for a test without a runtime of its own (a UI test that steps its frames in
/// `cond`): waits up to `limit`.
pub fn wait_for_blocking(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
