//! `signalbox credentials`: the relay's Vonage-compatible API key and secret.

use std::path::PathBuf;
use std::process::ExitCode;

use signalbox_relay::vonage::Credentials;

/// Whose credentials.
#[derive(Debug, clap::Args)]
pub(crate) struct CredentialsArgs {
    /// The relay's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) fn run(args: CredentialsArgs) -> anyhow::Result<ExitCode> {
    let creds = Credentials::load_or_create(&super::data_dir(args.data_dir)?)?;
    println!("api_key: {}", creds.api_key);
    println!("api_secret: {}", creds.api_secret);
    Ok(ExitCode::SUCCESS)
}
