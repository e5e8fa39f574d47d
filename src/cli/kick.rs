//! `signalbox kick`: remove a connection from a session (the invite's token must be a
//! moderator's).

use std::process::ExitCode;
use std::time::Duration;

use signalbox_client::Event;
use signalbox_proto::{ConnectionId, LeftReason};

/// Whom to remove.
#[derive(Debug, clap::Args)]
pub(crate) struct KickArgs {
    /// A moderator's invite to the session.
    #[arg(long, env = "SIGNALBOX_INVITE")]
    invite: String,
    /// The connection to remove.
    id: ConnectionId,
}

pub(crate) async fn run(args: KickArgs) -> anyhow::Result<ExitCode> {
    let mut stop = super::Stop::catch();
    let (client, mut events) = stop
        .join(super::options(&args.invite, Some("moderator".into()))?)
        .await?;
    let work = async {
        if client.peer(args.id).is_none() {
            anyhow::bail!(
                "connection {} is not in session {}",
                args.id,
                client.session()
            );
        }
        client.kick(args.id).await?;
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = events.next().await {
                match event {
                    Event::Left { peer, reason } if peer.id == args.id => return Ok(reason),
                    Event::Denied { message } => return Err(anyhow::anyhow!("{message}")),
                    Event::Disconnected { message, .. } => {
                        return Err(anyhow::anyhow!("disconnected: {message}"));
                    }
                    _ => {}
                }
            }
            Err(anyhow::anyhow!("the connection ended"))
        })
        .await
        .map_err(|_| anyhow::anyhow!("no answer from the relay within 5 s"))??;
        if outcome == LeftReason::ForceDisconnected {
            println!("removed {}", args.id);
        } else {
            println!("{} left ({outcome})", args.id);
        }
        Ok(ExitCode::SUCCESS)
    };
    super::joined(&client, stop, work).await
}
