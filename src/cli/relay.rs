//! `signalbox relay`: run a relay until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ArgMatches;
use clap::parser::ValueSource;
use signalbox_proto::{Role, SessionId};
use signalbox_relay::{Relay, RelayConfig, TokenRequest};

/// A relay: settings from flags, from `--config relay.toml`, or both (flags win).
#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    #[command(flatten)]
    settings: RelayConfig,
    /// Read settings from this TOML file (see assets/relay.toml); flags override it.
    #[arg(long = "config", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// The session of the printed moderator invite.
    #[arg(long, default_value = "lobby")]
    session: SessionId,
}

/// The settings: the file (if any), with every flag given on the command line on top.
fn settings(args: &RelayArgs, matches: &ArgMatches) -> anyhow::Result<RelayConfig> {
    let Some(path) = &args.config_file else {
        return Ok(args.settings.clone());
    };
    let file = RelayConfig::from_toml_file(path)?;
    let ids: Vec<String> = {
        use clap::Args;
        RelayConfig::augment_args(clap::Command::new("relay"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect()
    };
    let given: Vec<&str> = ids
        .iter()
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(String::as_str)
        .collect();
    Ok(file.merged(&args.settings, &given))
}

pub(crate) async fn run(args: RelayArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let config = settings(&args, matches)?;
    // Caught from here: a stop that comes while the relay starts shuts it down cleanly once
    // it has started, rather than killing it half-way.
    let mut stop = super::Stop::catch();
    let relay = Relay::spawn(config).await?;
    let token = relay.tokens().mint(&TokenRequest {
        session: args.session.to_string(),
        role: Role::Moderator,
        ..TokenRequest::default()
    })?;
    println!("quic: {}", relay.quic_addr());
    println!("fingerprint: {}", relay.fingerprint());
    match relay.http_addr() {
        Some(addr) => println!("http: {addr}"),
        None => println!("http: off"),
    }
    println!("mode: {}", if relay.is_open() { "open" } else { "token" });
    // The moderator's invite can remove anyone: it is the operator's. Participants get
    // publisher invites from `signalbox invite`.
    println!(
        "moderator invite: {}",
        relay.invite(args.session.clone(), Some(token))
    );

    stop.signalled().await;
    eprintln!("shutting down…");
    relay.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
