//! Hosting that outlives the window: a `signalbox relay` process started in the background
//! (its own process group, so closing the app or its terminal does not stop it). Every relay
//! records where it runs in its data directory ([`RunningRelay`]); the next app finds it there
//! and manages it through its REST API on loopback, with a server token it mints from the
//! same data directory's secret — whoever started it: this app, a systemd user unit, or the
//! XDG autostart entry the app writes for "start at login".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signalbox_proto::{ConnectionId, ConnectionInfo, Invite, Role, SessionId};
use signalbox_relay::tokens::RunningRelay;
use signalbox_relay::{TokenKeys, TokenRequest};

/// Where its output goes, in its data directory.
const LOG: &str = "background.log";
/// How long a started relay has to answer.
const START_WAIT: Duration = Duration::from_secs(5);

/// What the app shows of a background relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundView {
    /// Where it runs.
    pub relay: RunningRelay,
    /// Its REST API.
    pub http: SocketAddr,
    /// The session its invites are for.
    pub session: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// A participant's invite (publisher), with a LAN address.
    pub invite: Invite,
    /// A moderator's invite.
    pub moderator_invite: Invite,
    /// The moderator's invite over loopback, for joining from this machine.
    pub local_invite: Invite,
    /// Who is in its session now.
    pub people: Vec<ConnectionInfo>,
}

/// How to start one.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The `signalbox` executable.
    pub exe: PathBuf,
    /// The data directory (identity, token secret) it shares with the app.
    pub data_dir: PathBuf,
    /// UDP port (0: any).
    pub port: u16,
    /// The session of its invites.
    pub session: SessionId,
    /// Joins without a token.
    pub open: bool,
    /// Announce on the LAN.
    pub announce: bool,
    /// Loopback only (tests).
    pub loopback_only: bool,
    /// The mDNS port (tests).
    pub mdns_port: Option<u16>,
}

impl StartOptions {
    /// The command line of the relay (without the executable).
    pub fn args(&self, http: SocketAddr) -> Vec<String> {
        let ip = if self.loopback_only {
            "127.0.0.1"
        } else {
            "0.0.0.0"
        };
        let mut args = vec![
            "relay".to_owned(),
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
            "--listen".to_owned(),
            format!("{ip}:{}", self.port),
            "--http".to_owned(),
            http.to_string(),
            "--session".to_owned(),
            self.session.to_string(),
        ];
        if self.open {
            args.push("--open".into());
        }
        if self.announce {
            args.push("--announce".into());
            args.push("--announce-session".into());
            args.push(self.session.to_string());
        }
        if let Some(port) = self.mdns_port {
            args.push("--mdns-port".into());
            args.push(port.to_string());
        }
        args
    }
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Starts a relay process in the background and waits until it answers.
pub async fn start(o: &StartOptions) -> Result<RunningRelay, String> {
    std::fs::create_dir_all(&o.data_dir).map_err(|e| e.to_string())?;
    let http = free_loopback_port().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(o.data_dir.join(LOG)).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(&o.exe);
    cmd.args(o.args(http))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C in the app's terminal, or the app ending, leaves it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", o.exe.display()))?;
    let pid = child.id();
    // Not waited for: it outlives the app (init reaps it).
    drop(child);
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        if let Some(relay) = RunningRelay::read(&o.data_dir).filter(|r| r.pid == pid)
            && healthy(http).await
        {
            return Ok(relay);
        }
        if tokio::time::Instant::now() >= deadline {
            let out = std::fs::read_to_string(o.data_dir.join(LOG)).unwrap_or_default();
            let why = out
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("it did not answer");
            return Err(format!("the background relay did not start: {why}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn healthy(http: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build();
    let Ok(client) = client else { return false };
    match client.get(format!("http://{http}/healthz")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// The relay running from `data_dir` in another process, if one is recorded, serves a REST
/// API and answers.
pub async fn find(data_dir: &Path) -> Option<RunningRelay> {
    let relay = RunningRelay::read(data_dir)?;
    let http = relay.http?;
    (relay.pid != std::process::id() && healthy(http).await).then_some(relay)
}

/// A server token for the relay's session, minted from the shared data directory.
fn server_token(data_dir: &Path, session: &str) -> Result<String, String> {
    let keys = TokenKeys::load_or_create(data_dir).map_err(|e| e.to_string())?;
    keys.mint(&TokenRequest {
        session: session.into(),
        role: Role::Server,
        ttl: Some(Duration::from_secs(300)),
        ..TokenRequest::default()
    })
    .map_err(|e| e.to_string())
}

/// What the app shows of it: invites to `session` and who is there (through its REST API).
pub async fn view(
    relay: &RunningRelay,
    data_dir: &Path,
    session: &str,
) -> Result<BackgroundView, String> {
    let http = relay.http.ok_or("the relay serves no REST API")?;
    let token = server_token(data_dir, session)?;
    let response = reqwest::Client::new()
        .get(format!("http://{http}/v1/sessions/{session}/connections"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| format!("the background relay does not answer: {e}"))?;
    // 404: nobody is in the session yet.
    let people: Vec<ConnectionInfo> = if response.status() == reqwest::StatusCode::NOT_FOUND {
        Vec::new()
    } else {
        response.json().await.map_err(|e| e.to_string())?
    };
    let keys = TokenKeys::load_or_create(data_dir).map_err(|e| e.to_string())?;
    let mint = |role| {
        keys.mint(&TokenRequest {
            session: session.to_owned(),
            role,
            ..TokenRequest::default()
        })
        .map_err(|e| e.to_string())
    };
    let fingerprint = signalbox_relay::tokens::recorded_fingerprint(data_dir)
        .ok_or("the background relay's fingerprint is not recorded")?;
    let sid = SessionId::new(session.to_owned()).map_err(|e| e.to_string())?;
    let host = if relay.quic.ip().is_loopback() {
        "127.0.0.1".to_owned()
    } else {
        signalbox_relay::net::reachable_host(relay.quic)
    };
    let invite = |host: &str, token: String| Invite {
        host: host.to_owned(),
        port: relay.quic.port(),
        session: sid.clone(),
        fingerprint: Some(fingerprint),
        token: Some(token),
    };
    let moderator = mint(Role::Moderator)?;
    Ok(BackgroundView {
        relay: relay.clone(),
        http,
        session: session.to_owned(),
        data_dir: data_dir.to_owned(),
        invite: invite(&host, mint(Role::Publisher)?),
        moderator_invite: invite(&host, moderator.clone()),
        local_invite: invite("127.0.0.1", moderator),
        people,
    })
}

/// Removes `id` from the relay's session.
pub async fn kick(view: &BackgroundView, id: ConnectionId) -> Result<(), String> {
    let token = server_token(&view.data_dir, &view.session)?;
    let url = format!(
        "http://{}/v1/sessions/{}/connections/{id}",
        view.http, view.session
    );
    let response = reqwest::Client::new()
        .delete(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the relay answered {}", response.status()))
    }
}

/// Stops it (SIGTERM: it tells everyone `relayShutdown`) and waits until it is gone.
pub async fn stop(relay: &RunningRelay) -> Result<(), String> {
    #[cfg(unix)]
    {
        let pid = i32::try_from(relay.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or("the recorded process id is not valid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| format!("cannot stop process {}: {e}", relay.pid))?;
    }
    let deadline = tokio::time::Instant::now() + START_WAIT;
    while let Some(http) = relay.http
        && healthy(http).await
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The XDG autostart entry that starts the background relay at login: under
/// `$SIGNALBOX_HOME/autostart` when that is set, else the user's config dir's `autostart`.
pub fn autostart_file() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os(signalbox_relay::paths::HOME_ENV) {
        return Some(PathBuf::from(home).join("autostart/signalbox-host.desktop"));
    }
    directories::BaseDirs::new().map(|d| d.config_dir().join("autostart/signalbox-host.desktop"))
}

/// Writes (or removes) the autostart entry for these options.
pub fn set_autostart(o: &StartOptions, on: bool) -> Result<(), String> {
    let path = autostart_file().ok_or("no config directory")?;
    write_autostart(&path, o, on)
}

fn write_autostart(path: &Path, o: &StartOptions, on: bool) -> Result<(), String> {
    if !on {
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    // The HTTP port is chosen at each start: 127.0.0.1:0 would not be found again, so the
    // entry uses a fixed loopback port beside the QUIC one.
    let http = SocketAddr::from(([127, 0, 0, 1], 4480));
    let quote = |a: &str| {
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
        {
            a.to_owned()
        } else {
            format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
        }
    };
    let exec: Vec<String> = std::iter::once(o.exe.display().to_string())
        .chain(o.args(http))
        .map(|a| quote(&a))
        .collect();
    let entry = format!(
        "[Desktop Entry]\nType=Application\nName=Signalbox relay\nComment=Host a Signalbox relay in the background\nExec={}\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
        exec.join(" ")
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, entry).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autostart_entry_runs_the_same_relay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autostart/signalbox-host.desktop");
        let o = StartOptions {
            exe: "/usr/bin/signalbox".into(),
            data_dir: "/home/ann/.local/share/signal box".into(),
            port: 4433,
            session: SessionId::new("lab").unwrap(),
            open: false,
            announce: true,
            loopback_only: false,
            mdns_port: None,
        };
        write_autostart(&path, &o, true).unwrap();
        let entry = std::fs::read_to_string(&path).unwrap();
        assert!(
            entry.starts_with("[Desktop Entry]\nType=Application\n"),
            "{entry}"
        );
        let exec = entry.lines().find_map(|l| l.strip_prefix("Exec=")).unwrap();
        assert_eq!(
            exec,
            "/usr/bin/signalbox relay --data-dir \"/home/ann/.local/share/signal box\" --listen 0.0.0.0:4433 --http 127.0.0.1:4480 --session lab --announce --announce-session lab"
        );
        write_autostart(&path, &o, false).unwrap();
        assert!(!path.exists());
    }
}
