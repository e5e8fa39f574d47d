//! `signalbox discover`: list the relays announcing themselves on the LAN.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use signalbox_client::discovery::{BrowseOptions, Browser, Discovery, NearbyRelay};

/// How long to look, and how to print.
#[derive(Debug, clap::Args)]
pub(crate) struct DiscoverArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// How long to listen for announcements.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    wait: Duration,
    /// The UDP port of mDNS (as the relays' `--mdns-port`).
    #[arg(long, default_value_t = 5353)]
    mdns_port: u16,
    /// Look on the loopback interface only (relays on this machine bound to 127.0.0.1).
    #[arg(long)]
    loopback: bool,
}

/// One relay as a JSON object.
pub(crate) fn relay_json(r: &NearbyRelay) -> serde_json::Value {
    let a = &r.announcement;
    json!({
        "name": a.name,
        "address": r.address().to_string(),
        "addresses": r.addresses,
        "port": r.port,
        "fingerprint": a.fingerprint.to_string(),
        "protocol": a.protocol,
        "mode": if a.open { "open" } else { "token" },
        "sessions": a.sessions,
        "instance": r.instance,
    })
}

fn relay_line(r: &NearbyRelay) -> String {
    let a = &r.announcement;
    let mut line = format!(
        "{}  {}  {}  fp {}",
        a.name,
        r.address(),
        if a.open { "open" } else { "token" },
        a.fingerprint.short()
    );
    if !a.sessions.is_empty() {
        let sessions: Vec<&str> = a.sessions.iter().map(|s| s.as_str()).collect();
        line.push_str(&format!("  sessions: {}", sessions.join(",")));
    }
    if !a.compatible() {
        line.push_str(&format!(
            "  (protocol {}: not joinable by this version)",
            a.protocol
        ));
    }
    line
}

pub(crate) async fn run(args: DiscoverArgs) -> anyhow::Result<ExitCode> {
    let mut browser = Browser::start(&BrowseOptions {
        mdns_port: args.mdns_port,
        loopback_only: args.loopback,
    })?;
    let deadline = tokio::time::Instant::now() + args.wait;
    // What was printed, by instance: a relay is printed again only when its record changes.
    let mut printed: HashMap<String, NearbyRelay> = HashMap::new();
    let mut out = std::io::stdout().lock();
    while let Ok(Some(found)) = tokio::time::timeout_at(deadline, browser.next()).await {
        let Discovery::Found(relay) = found else {
            continue;
        };
        if printed.get(&relay.instance) == Some(&relay) {
            continue;
        }
        if args.json {
            writeln!(out, "{}", relay_json(&relay))?;
        } else {
            writeln!(out, "{}", super::terminal_safe(&relay_line(&relay)))?;
        }
        out.flush()?;
        printed.insert(relay.instance.clone(), relay);
    }
    if printed.is_empty() && !args.json {
        eprintln!(
            "no relays found in {} (relays announce with `signalbox relay --announce`)",
            humantime::format_duration(args.wait)
        );
    }
    Ok(ExitCode::SUCCESS)
}
