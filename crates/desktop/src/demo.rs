//! `signalbox --demo`: the app hosts a relay, joins it, and a few scripted participants
//! chat and drive a "robot", so there is something to look at (and to screenshot).

use std::time::Duration;

use signalbox_client::{Client, ConnectOptions, Event, Signal};
use signalbox_proto::{Invite, Role};
use signalbox_relay::{Relay, RelayConfig, RelayHandle, TokenRequest};

/// A relay with scripted participants, running on its own thread until the process ends.
#[derive(Debug)]
pub struct Demo {
    /// A moderator invite for the app to join with.
    pub invite: Invite,
}

async fn participant(
    relay_invite: &Invite,
    relay: &RelayHandle,
    name: &str,
    role: Role,
) -> Option<(Client, signalbox_client::Events)> {
    let token = relay
        .tokens()
        .mint(&TokenRequest {
            session: relay_invite.session.to_string(),
            role,
            name: Some(name.into()),
            ..TokenRequest::default()
        })
        .ok()?;
    let mut invite = relay_invite.clone();
    invite.token = Some(token);
    Client::connect(ConnectOptions::from_invite(&invite))
        .await
        .ok()
}

async fn script(relay: RelayHandle, invite: Invite) {
    let Some((ann, mut ann_ev)) = participant(&invite, &relay, "ann", Role::Publisher).await else {
        return;
    };
    let Some((robot, mut robot_ev)) =
        participant(&invite, &relay, "robot-1", Role::Publisher).await
    else {
        return;
    };
    let Some((cam, _cam_ev)) = participant(&invite, &relay, "camera", Role::Subscriber).await
    else {
        return;
    };
    drop(cam);
    // The robot acknowledges each command; ann answers chat.
    tokio::spawn(async move {
        while let Some(e) = robot_ev.next().await {
            if let Event::Signal(s) = e
                && s.r#type == "robot"
                && let Some(from) = s.from
            {
                let _ = robot
                    .send_unconfirmed(Signal::to_one(
                        from,
                        "robot-status",
                        format!("ok: {}", s.data),
                    ))
                    .await;
            }
        }
    });
    let lines = [
        "Morning! The robot is on the bench, battery at 80 %.",
        "Try the arrow keys on the control pad.",
        "Camera is streaming from the north door.",
    ];
    let mut tick = tokio::time::interval(Duration::from_millis(1500));
    let mut i = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if i < lines.len() {
                    let _ = ann.send_unconfirmed(Signal::to_all("chat", lines[i])).await;
                }
                let _ = ann.send_unconfirmed(Signal::to_all("telemetry", format!("{{\"battery\":{},\"temp\":{}}}", 80 - i % 20, 21 + i % 3))).await;
                i += 1;
            }
            e = ann_ev.next() => {
                match e {
                    Some(Event::Signal(s)) if s.r#type == "chat" && s.from != Some(ann.me().id) => {
                        if let Some(from) = s.from {
                            let _ = ann.send_unconfirmed(Signal::to_one(from, "chat-read", s.seq.to_string())).await;
                        }
                    }
                    None => return,
                    _ => {}
                }
            }
        }
    }
}

impl Demo {
    /// Starts the demo relay (open, on a free loopback port) and its participants.
    pub fn start() -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("signalbox-demo".into())
            .spawn(move || {
                let Ok(rt) = signalbox_relay::runtime::builder()
                    .worker_threads(1)
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let dir =
                        std::env::temp_dir().join(format!("signalbox-demo-{}", std::process::id()));
                    let config = RelayConfig {
                        open: true,
                        ..RelayConfig::local(dir)
                    };
                    let relay = match Relay::spawn(config).await {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let session: signalbox_proto::SessionId = match "demo".parse() {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                    let token = relay
                        .tokens()
                        .mint(&TokenRequest {
                            session: session.to_string(),
                            role: Role::Moderator,
                            ..TokenRequest::default()
                        })
                        .ok();
                    let invite = relay.invite(session, token);
                    let _ = tx.send(Ok(invite.clone()));
                    script(relay, invite).await;
                });
            })
            .map_err(|e| e.to_string())?;
        let invite = rx.recv().map_err(|e| e.to_string())??;
        Ok(Self { invite })
    }
}
