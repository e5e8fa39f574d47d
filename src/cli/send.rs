//! `signalbox send`: send one signal, or one per line of stdin, and exit once the relay has
//! accepted them all.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use signalbox_client::{Event, Receipt, SendError, Signal};
use signalbox_proto::{ConnectionId, Target};

/// What to send, and to whom.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The invite (signalbox://HOST:PORT/SESSION?fp=…&token=…).
    #[arg(long, env = "SIGNALBOX_INVITE")]
    invite: String,
    /// A connection to send to (repeat for several); everyone when absent.
    #[arg(long = "to", value_name = "ID")]
    to: Vec<ConnectionId>,
    /// The signal type (A-Z a-z 0-9 - _ ~, at most 128 bytes).
    #[arg(long = "type", value_name = "TYPE", default_value = "")]
    ty: String,
    /// The data.
    #[arg(long, group = "source")]
    data: Option<String>,
    /// Read the data from a file (UTF-8).
    #[arg(long, value_name = "FILE", group = "source")]
    data_file: Option<PathBuf>,
    /// Send each line of stdin as one signal, in order, over one connection.
    #[arg(long, group = "source")]
    lines: bool,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
}

fn report(what: &str, e: &SendError) {
    eprintln!("error {}: {e}{what}", e.code());
}

pub(crate) async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let target = Target::from_ids(args.to.clone());
    let make = |data: String| Signal {
        to: target.clone(),
        r#type: args.ty.clone(),
        data,
    };
    // Read a file before connecting, so a missing file fails at once. (The signal itself is
    // checked against the limits this relay announces, once connected.)
    let single = match (&args.data, &args.data_file, args.lines) {
        (_, _, true) => None,
        (Some(d), _, _) => Some(make(d.clone())),
        (None, Some(path), _) => {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
            Some(make(text))
        }
        (None, None, false) => Some(make(String::new())),
    };

    let mut options: signalbox_client::ConnectOptions = args.invite.parse()?;
    options.name = args.name.clone();
    // A sender has no use for the session's broadcasts (nor its own coming back).
    options.receive_broadcasts = false;
    let mut stop = super::Stop::catch();
    let (client, mut events) = stop.join(options).await?;
    // Drain events (presence, signals addressed to us); stop on disconnect.
    let (gone_tx, mut gone_rx) = tokio::sync::watch::channel(None::<String>);
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::Disconnected { reason, message } = event {
                let _ = gone_tx.send(Some(format!("disconnected ({reason}): {message}")));
            }
        }
    });

    let work = async {
        let mut receipts: Vec<(String, Receipt)> = Vec::new();
        let mut failed = false;
        match single {
            Some(signal) => match client.send(signal).await {
                Ok(r) => receipts.push((String::new(), r)),
                Err(e) => {
                    report("", &e);
                    failed = true;
                }
            },
            None => {
                let stdin = std::io::stdin();
                let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(256);
                // Blocking stdin on its own thread; lines go over a bounded channel in order.
                std::thread::spawn(move || {
                    for line in stdin.lock().lines() {
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                });
                let mut n = 0usize;
                while let Some(line) = rx.recv().await {
                    n += 1;
                    let line = line.map_err(|e| anyhow::anyhow!("reading stdin: {e}"))?;
                    match client.send(make(line)).await {
                        Ok(r) => receipts.push((format!(" (line {n})"), r)),
                        Err(e) => {
                            report(&format!(" (line {n})"), &e);
                            failed = true;
                            if matches!(e, SendError::NotConnected) {
                                break;
                            }
                        }
                    }
                }
            }
        }
        for (what, receipt) in receipts {
            let outcome = tokio::select! {
                r = receipt.accepted() => r,
                _ = gone_rx.wait_for(Option::is_some) => Err(SendError::NotConnected),
            };
            if let Err(e) = outcome {
                report(&what, &e);
                failed = true;
            }
        }
        if let Some(why) = gone_rx.borrow().clone() {
            eprintln!("{why}");
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    };
    super::joined(&client, stop, work).await
}
