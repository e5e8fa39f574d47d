//! `signalbox invite`: an invite URL for a relay whose data directory is on this machine.

use std::process::ExitCode;

use signalbox_client::ConnectOptions;
use signalbox_proto::invite::DEFAULT_PORT;
use signalbox_proto::{Invite, SessionId};
use signalbox_relay::Identity;

use super::token::TokenArgs;

/// An invite: the relay's address and fingerprint, the session, and a token.
#[derive(Debug, clap::Args)]
pub(crate) struct InviteArgs {
    #[command(flatten)]
    token: TokenArgs,
    /// The address others reach the relay at (`HOST[:PORT]`); default: this machine's LAN
    /// address and port 4433.
    #[arg(long)]
    host: Option<String>,
    /// Leave the token out (for relays in open mode).
    #[arg(long)]
    no_token: bool,
}

pub(crate) fn run(args: InviteArgs) -> anyhow::Result<ExitCode> {
    let data_dir = super::data_dir(args.token.data_dir.clone())?;
    // The certificate the relay presents (recorded when it starts; with `--cert` it is not
    // the data directory's own), else the data directory's identity.
    let fingerprint = match signalbox_relay::tokens::recorded_fingerprint(&data_dir) {
        Some(recorded) => recorded,
        None => Identity::load_or_create(&data_dir)?.fingerprint,
    };
    let (host, port) = match &args.host {
        Some(h) => ConnectOptions::split_address(h)
            .ok_or_else(|| anyhow::anyhow!("'{h}' is not HOST or HOST:PORT"))?,
        None => (
            signalbox_relay::net::reachable_host(([0, 0, 0, 0], DEFAULT_PORT).into()),
            DEFAULT_PORT,
        ),
    };
    let token = if args.no_token {
        None
    } else {
        Some(args.token.mint()?)
    };
    let invite = Invite {
        host,
        port,
        session: SessionId::new(args.token.session.clone())?,
        fingerprint: Some(fingerprint),
        token,
    };
    println!("{invite}");
    Ok(ExitCode::SUCCESS)
}
