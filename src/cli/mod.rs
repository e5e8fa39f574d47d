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
}

/// Parses the command line, keeping the matches (to tell flags given from defaults).
pub(crate) fn parse() -> (Cli, ArgMatches) {
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, matches),
        Err(e) => e.exit(),
    }
}

pub(crate) fn init_tracing(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Some(Command::Relay(_))) => "info",
        (0, _) => "warn",
        (1, _) => "info",
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
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let Some(command) = cli.command else {
        // No command: the desktop app.
        signalbox_desktop::run(signalbox_desktop::Options { demo: cli.demo })
            .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
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
    }
}

/// The data directory: `--data-dir`, else the default (`SIGNALBOX_HOME` aware).
fn data_dir(flag: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    Ok(match flag {
        Some(d) => d,
        None => signalbox_relay::paths::data_dir()?,
    })
}

/// Connects with an invite, turning the error into one line for people.
async fn connect(
    invite: &str,
    name: Option<String>,
) -> anyhow::Result<(signalbox_client::Client, signalbox_client::Events)> {
    let mut options: signalbox_client::ConnectOptions = invite.parse()?;
    options.name = name;
    Ok(signalbox_client::Client::connect(options).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
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
