//! The command line: one module per subcommand.

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

mod credentials;
mod discover;
mod invite;
mod kick;
mod listen;
mod relay;
mod send;
mod token;

/// Signalbox: pass signals between machines on a LAN or the internet, over QUIC.
///
/// Without a command, opens the desktop app.
#[derive(Debug, Parser)]
#[command(name = "signalbox", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log more (repeat for more detail); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// With no command: open the app on a demo session (a hosted relay with scripted
    /// participants).
    #[arg(long)]
    demo: bool,

    /// With no command: the UDP port the app looks for relays on (as the relays'
    /// `--mdns-port`; 5353 is mDNS's own).
    #[arg(long, value_name = "PORT", default_value_t = 5353)]
    mdns_port: u16,

    /// With no command: the app looks for relays on this machine only (on loopback).
    #[arg(long)]
    loopback: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a relay (the headless daemon).
    Relay(Box<relay::RelayArgs>),
    /// Print a join token signed by a relay's secret.
    Token(token::TokenArgs),
    /// Print an invite URL (address, session, fingerprint, token) for a relay on this machine.
    Invite(invite::InviteArgs),
    /// Send signals to a session.
    Send(send::SendArgs),
    /// Print the signals and presence of a session as they come.
    Listen(listen::ListenArgs),
    /// Remove a connection from a session (moderators).
    Kick(kick::KickArgs),
    /// List the relays that announce themselves on the LAN.
    Discover(discover::DiscoverArgs),
    /// Print the relay's Vonage-compatible API key and secret (for the OpenTok server SDKs).
    Credentials(credentials::CredentialsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for signalbox and every subcommand into a directory.
    #[command(hide = true)]
    Manpages {
        /// Where (created if missing).
        dir: std::path::PathBuf,
    },
}

/// What `--version` prints: the version, the wire protocol it speaks, and the commit it was
/// built from.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (protocol {}, commit {})",
            env!("CARGO_PKG_VERSION"),
            signalbox_proto::PROTOCOL_VERSION,
            env!("SIGNALBOX_GIT_COMMIT")
        )
    })
}

/// The command-line definition, with its full version.
pub(crate) fn definition() -> clap::Command {
    Cli::command().version(version())
}

/// Parses the command line, keeping the matches (to tell flags given from defaults).
pub(crate) fn parse() -> (Cli, ArgMatches) {
    let matches = definition().get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, matches),
        Err(e) => e.exit(),
    }
}

pub(crate) fn init_tracing(cli: &Cli) {
    // The WebTransport library warns about every browser that goes away without closing
    // its session; the relay logs those departures itself.
    let default = match (cli.verbose, &cli.command) {
        (0, Some(Command::Relay(_))) => "info,web_transport_quinn=error",
        (0, _) => "warn,web_transport_quinn=error",
        (1, _) => "info,web_transport_quinn=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(signalbox_relay::runtime::builder().build()?)
}

pub(crate) fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let Some(command) = cli.command else {
        // No command: the desktop app.
        signalbox_desktop::run(signalbox_desktop::Options {
            demo: cli.demo,
            discovery: signalbox_client::discovery::BrowseOptions {
                mdns_port: cli.mdns_port,
                loopback_only: cli.loopback,
            },
        })
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    };
    let outcome = match command {
        Command::Relay(args) => {
            let sub = matches.subcommand_matches("relay").unwrap_or(matches);
            runtime()?.block_on(relay::run(*args, sub))
        }
        Command::Token(args) => token::run(args),
        Command::Invite(args) => invite::run(args),
        Command::Send(args) => runtime()?.block_on(send::run(args)),
        Command::Listen(args) => runtime()?.block_on(listen::run(args)),
        Command::Kick(args) => runtime()?.block_on(kick::run(args)),
        Command::Credentials(args) => credentials::run(args),
        Command::Discover(args) => runtime()?.block_on(discover::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut definition(),
                "signalbox",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(definition(), &dir)?;
            Ok(ExitCode::SUCCESS)
        }
    };
    // Stopped by a signal before it could start: the conventional exit code, no message.
    outcome.or_else(|e| match e.downcast::<Stopped>() {
        Ok(Stopped(signal)) => Ok(ExitCode::from(128 + signal)),
        Err(e) => Err(e),
    })
}

/// The data directory: `--data-dir`, else the default (`SIGNALBOX_HOME` aware).
fn data_dir(flag: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    Ok(match flag {
        Some(d) => d,
        None => signalbox_relay::paths::data_dir()?,
    })
}

/// Runs `work` for a joined `client`; when it ends — or on Ctrl-C, SIGTERM or SIGHUP, or an
/// error — leaves the session cleanly (`Leave`, then close code 0: peers see
/// `clientDisconnected` at once, not after the relay's timeouts) before returning. Stopped
/// by a signal, the exit code is 128 + its number.
async fn joined(
    client: &signalbox_client::Client,
    mut stop: Stop,
    work: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let outcome = stop.during(work).await.unwrap_or_else(Ok);
    client.leave().await;
    client.wait_idle().await;
    outcome
}

/// Ctrl-C (SIGINT), SIGTERM (systemd's stop) and SIGHUP (the terminal closed), caught from
/// the moment it is made. A command makes it before it connects: a signal that comes while it
/// is still joining, or just after, neither kills it before it can leave cleanly (its peers
/// would then see it leave only after the relay's timeouts) nor goes unheard.
pub(crate) struct Stop {
    #[cfg(unix)]
    signals: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Stop {
    /// Starts catching the signals.
    pub(crate) fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                _ => None,
            };
            Self { signals }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for one of the signals (or one that came since [`Stop::catch`]); returns its
    /// number.
    pub(crate) async fn signalled(&mut self) -> u8 {
        #[cfg(unix)]
        if let Some([int, term, hup]) = &mut self.signals {
            return tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
                _ = hup.recv() => 1,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        2
    }

    /// Runs a command's start (connecting and joining) unless a signal comes first; then the
    /// error [`Stopped`], which [`run`] turns into the exit code 128 + the signal's number.
    pub(crate) async fn before<T>(
        &mut self,
        start: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            r = start => r,
            signal = self.signalled() => Err(Stopped(signal).into()),
        }
    }

    /// Connects and joins unless a signal comes first; then the error [`Stopped`]. A join
    /// given up this way closes its connection as a client that left on purpose, and waits a
    /// moment (at most [`CLOSE_GRACE`]) for that close to leave the machine: a relay that had
    /// admitted it already then says at once that it left (`clientDisconnected`), rather than
    /// after its timeouts.
    pub(crate) async fn join(
        &mut self,
        options: signalbox_client::ConnectOptions,
    ) -> anyhow::Result<(signalbox_client::Client, signalbox_client::Events)> {
        let endpoint = self
            .before(async { Ok(signalbox_client::endpoint_for(&options).await?) })
            .await?;
        let joined = self
            .before(async {
                Ok(signalbox_client::Client::connect_with(endpoint.clone(), options).await?)
            })
            .await;
        if joined.as_ref().is_err_and(|e| e.is::<Stopped>()) {
            let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
        }
        joined
    }

    /// Runs `work` unless a signal comes first; then the exit code for it (128 + its number).
    pub(crate) async fn during<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ExitCode> {
        tokio::select! {
            r = work => Ok(r),
            signal = self.signalled() => Err(ExitCode::from(128 + signal)),
        }
    }
}

/// How long a command stopped while joining waits for its connection's close to be sent.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// A command was stopped by the signal with this number before it joined.
#[derive(Debug)]
pub(crate) struct Stopped(u8);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by signal {}", self.0)
    }
}

impl std::error::Error for Stopped {}

/// Resolves when standard output is a pipe or socket whose reader has gone (`listen | head`
/// after `head` exited), without waiting for the next write to fail. Never resolves for a
/// terminal or a file.
pub(crate) async fn stdout_closed() {
    #[cfg(unix)]
    {
        use rustix::event::{PollFd, PollFlags, poll};
        use std::os::fd::AsFd;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // poll(2) with no events asked reports only errors and hang-ups: for the write end of
        // a pipe, that its reader closed. A thread of its own, as the wait has no end.
        std::thread::spawn(move || {
            let stdout = std::io::stdout();
            let mut fds = [PollFd::from_borrowed_fd(stdout.as_fd(), PollFlags::empty())];
            loop {
                match poll(&mut fds, None) {
                    Ok(_) => {
                        let got = fds[0].revents();
                        if got.intersects(PollFlags::ERR | PollFlags::HUP) {
                            let _ = tx.send(());
                            return;
                        }
                        if got.contains(PollFlags::NVAL) {
                            return;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                }
            }
        });
        if rx.await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Makes text from others safe to print on a terminal: control characters (C0 but tab, DEL,
/// C1) and the invisible bidirectional controls are shown escaped (`\u{1b}`), so a peer's
/// data, name or mDNS record cannot set the window title, erase or forge lines, or reorder
/// what is shown. JSON output needs none of this: serde escapes it.
pub(crate) fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The options an invite gives, with the name to join as.
fn options(invite: &str, name: Option<String>) -> anyhow::Result<signalbox_client::ConnectOptions> {
    let mut options: signalbox_client::ConnectOptions = invite.parse()?;
    options.name = name;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_peers_cannot_drive_the_terminal() {
        // An OSC title, erase-line + carriage return + a forged line, a C1 CSI, DEL, and a
        // right-to-left override.
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2K\rrelay: all good\u{9b}31m\u{7f}\u{202e}txt.exe";
        let safe = terminal_safe(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe}");
        assert!(!safe.contains('\u{202e}'));
        assert_eq!(
            safe,
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2K\\u{d}relay: all good\\u{9b}31m\\u{7f}\\u{202e}txt.exe"
        );
        assert_eq!(
            terminal_safe("plain → text\twith a tab, é"),
            "plain → text\twith a tab, é"
        );
    }

    #[test]
    fn command_line_definition_is_consistent() {
        definition().debug_assert();
    }

    #[test]
    fn version_names_the_protocol_and_the_commit() {
        let v = version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains("(protocol 1, commit "), "{v}");
    }

    #[test]
    fn man_pages_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(definition(), dir.path()).unwrap();
        for page in [
            "signalbox.1",
            "signalbox-relay.1",
            "signalbox-listen.1",
            "signalbox-send.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{page} is roff");
        }
    }

    #[test]
    fn relay_flags_parse() {
        let cli = Cli::try_parse_from(["signalbox", "relay", "--http", "off", "--open"]).unwrap();
        let Some(Command::Relay(_)) = cli.command else {
            panic!("expected relay");
        };
        assert!(Cli::try_parse_from(["signalbox", "relay", "--http", "nonsense"]).is_err());
    }
}
