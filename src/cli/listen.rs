//! `signalbox listen`: print a session's signals and presence as they come.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::{Value, json};
use signalbox_client::{Client, Event, ReceivedSignal};
use signalbox_proto::{ConnectionId, ConnectionInfo};

/// What to print.
#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    /// The invite (signalbox://HOST:PORT/SESSION?fp=…&token=…).
    #[arg(long, env = "SIGNALBOX_INVITE")]
    invite: String,
    /// Only signals of this type (repeat for several).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Exit after this many (matching) signals.
    #[arg(long)]
    count: Option<u64>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
}

fn info_json(p: &ConnectionInfo) -> Value {
    json!({"id": p.id, "name": p.name, "role": p.role, "data": p.data, "joined_at": p.joined_at})
}

fn clock() -> String {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    // 2026-11-28T03:10:00.123Z → 03:10:00.123
    stamp.get(11..23).unwrap_or(&stamp).to_owned()
}

/// Names of everyone seen, for labelling senders.
struct Names {
    me: ConnectionId,
    names: HashMap<ConnectionId, String>,
}

impl Names {
    fn of(&self, id: Option<ConnectionId>) -> Option<String> {
        id.and_then(|id| self.names.get(&id).cloned())
    }

    fn label(&self, id: Option<ConnectionId>) -> String {
        match id {
            None => "relay".into(),
            Some(id) if id == self.me => "me".into(),
            Some(id) => match self.names.get(&id) {
                Some(n) => format!("{n} ({})", id.short()),
                None => id.short(),
            },
        }
    }
}

fn signal_line(s: &ReceivedSignal, names: &Names, as_json: bool) -> String {
    if as_json {
        return json!({
            "event": "signal", "from": s.from, "from_name": names.of(s.from),
            "to_all": s.to_all, "seq": s.seq, "type": s.r#type, "data": s.data,
        })
        .to_string();
    }
    let to = if s.to_all { "everyone" } else { "me" };
    let what = if s.is_ping() {
        "ping".to_owned()
    } else if s.r#type.is_empty() {
        s.data.to_string()
    } else {
        format!("[{}] {}", s.r#type, s.data)
    };
    format!("{}  {} → {to}  {what}", clock(), names.label(s.from))
}

fn connected_line(client: &Client, as_json: bool) -> String {
    let me = client.me();
    let peers = client.peers();
    if as_json {
        return json!({
            "event": "connected", "session": client.session(),
            "me": {"id": me.id, "name": me.name, "role": me.role, "data": me.data},
            "peers": peers.iter().map(info_json).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let others: Vec<String> = peers
        .iter()
        .map(|p| format!("{} ({})", p.name, p.id.short()))
        .collect();
    format!(
        "connected to {} as {} ({}, {}); {} here{}{}",
        client.session(),
        me.name,
        me.id,
        me.role,
        peers.len(),
        if others.is_empty() { "" } else { ": " },
        others.join(", ")
    )
}

pub(crate) async fn run(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let mut stop = super::Stop::catch();
    let (client, events) = stop
        .join(super::options(&args.invite, args.name.clone())?)
        .await?;
    super::joined(&client, stop, listen(&args, &client, events)).await
}

/// Prints until `--count` is reached, the connection ends, or nobody reads our output.
async fn listen(
    args: &ListenArgs,
    client: &Client,
    mut events: signalbox_client::Events,
) -> anyhow::Result<ExitCode> {
    let mut names = Names {
        me: client.me().id,
        names: client.peers().into_iter().map(|p| (p.id, p.name)).collect(),
    };
    let mut out = std::io::stdout().lock();
    let connected = connected_line(client, args.json);
    if args.json {
        writeln!(out, "{connected}")?;
    } else {
        writeln!(out, "{}", super::terminal_safe(&connected))?;
    }
    out.flush()?;
    drop(out);
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let reader_gone = super::stdout_closed();
    tokio::pin!(reader_gone);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => event,
                None => break,
            },
            // Whoever read our output has gone (e.g. `| head`): leave now, not at the next
            // signal.
            _ = &mut reader_gone => break,
        };
        let line = match &event {
            Event::Signal(s) => {
                if !args.types.is_empty() && !args.types.iter().any(|t| s.r#type == *t) {
                    continue;
                }
                seen += 1;
                signal_line(s, &names, args.json)
            }
            Event::Joined(p) => {
                names.names.insert(p.id, p.name.clone());
                if args.json {
                    json!({"event": "joined", "connection": p.id, "name": p.name, "role": p.role, "data": p.data}).to_string()
                } else {
                    format!("{}  + {} joined ({}, {})", clock(), p.name, p.id, p.role)
                }
            }
            Event::Left { peer, reason } => {
                if args.json {
                    json!({"event": "left", "connection": peer.id, "name": peer.name, "reason": reason}).to_string()
                } else {
                    format!(
                        "{}  - {} left ({reason})",
                        clock(),
                        names.label(Some(peer.id))
                    )
                }
            }
            Event::Rejected { seq, error } => {
                if args.json {
                    json!({"event": "rejected", "seq": seq, "code": error.code(), "message": error.to_string()}).to_string()
                } else {
                    format!("rejected #{seq}: error {}: {error}", error.code())
                }
            }
            Event::Denied { message } => {
                if args.json {
                    json!({"event": "denied", "message": message}).to_string()
                } else {
                    format!("denied: {message}")
                }
            }
            Event::Missed {
                from,
                first,
                last,
                count,
            } => {
                if args.json {
                    json!({"event": "missed", "from": from, "from_name": names.of(*from), "first": first, "last": last, "count": count}).to_string()
                } else {
                    format!(
                        "{}  {count} signals from {} were lost while away (#{first}–#{last})",
                        clock(),
                        names.label(*from)
                    )
                }
            }
            Event::Reconnecting { reason, message } => {
                if args.json {
                    json!({"event": "reconnecting", "reason": reason, "message": message})
                        .to_string()
                } else {
                    format!(
                        "{}  connection lost ({reason}: {message}); reconnecting…",
                        clock()
                    )
                }
            }
            Event::Reconnected { resumed, me } => {
                names.me = me.id;
                if args.json {
                    json!({"event": "reconnected", "resumed": resumed, "me": {"id": me.id, "name": me.name, "role": me.role}}).to_string()
                } else if *resumed {
                    format!("{}  reconnected (resumed; nothing missed)", clock())
                } else {
                    format!("{}  reconnected as a new connection {}", clock(), me.id)
                }
            }
            Event::Disconnected { reason, message } => {
                let line = if args.json {
                    json!({"event": "disconnected", "reason": reason, "message": message})
                        .to_string()
                } else {
                    super::terminal_safe(&format!("disconnected ({reason}): {message}"))
                        .into_owned()
                };
                println!("{line}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let line = if args.json {
            line
        } else {
            super::terminal_safe(&line).into_owned()
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            // Whoever read our output has gone (e.g. `| head`): stop quietly.
            break;
        }
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
