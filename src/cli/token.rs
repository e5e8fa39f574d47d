//! `signalbox token`: mint a join token with the relay's secret.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use signalbox_proto::Role;
use signalbox_relay::{TokenKeys, TokenRequest};

/// What goes into a token.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The session it admits to (`*` with `--role server` for every session).
    #[arg(long)]
    pub(crate) session: String,
    /// moderator, publisher, subscriber or server.
    #[arg(long, default_value = "publisher")]
    pub(crate) role: Role,
    /// Display name of whoever joins with it.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Connection data, visible to everyone in the session (≤ 1000 characters).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Lifetime, e.g. 30m, 24h, 7d (at most 30 days).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub(crate) ttl: Duration,
    /// The relay's data directory (where its token secret is).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

impl TokenArgs {
    pub(crate) fn mint(&self) -> anyhow::Result<String> {
        let keys = TokenKeys::load_or_create(&super::data_dir(self.data_dir.clone())?)?;
        Ok(keys.mint(&TokenRequest {
            session: self.session.clone(),
            role: self.role,
            name: self.name.clone(),
            data: self.data.clone(),
            ttl: Some(self.ttl),
        })?)
    }
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    println!("{}", args.mint()?);
    Ok(ExitCode::SUCCESS)
}
