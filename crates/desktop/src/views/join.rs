//! The join screen: paste an invite, or enter the relay's details; recent relays.

use signalbox_client::discovery::NearbyRelay;
use signalbox_proto::discovery::Trust;

use crate::backend::Command;
use crate::state::{AppState, ConnState};

/// The join screen.
pub fn join_screen(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    // The heading and the form share one left edge.
    ui.add_space(16.0);
    ui.heading("Join a session");
    ui.label("Paste the invite you were given, or enter the relay's details.");
    ui.add_space(12.0);
    let connecting = matches!(st.conn, ConnState::Connecting { .. });
    let mut edited = false;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_max_width(640.0);
        edited |= super::labelled_field(
            ui,
            "Invite",
            &mut st.join.invite,
            "signalbox://host:4433/session?fp=…&token=…",
        )
        .changed();
        edited |=
            super::labelled_field(ui, "Your name", &mut st.settings.name, "how others see you")
                .changed();
        let reveal = std::mem::take(&mut st.join.reveal);
        egui::CollapsingHeader::new("Or enter the relay's details")
            .default_open(false)
            .open(reveal.then_some(true))
            .show(ui, |ui| {
                for (label, value, hint) in [
                    ("Relay address", &mut st.join.address, "192.168.1.20:4433"),
                    ("Session", &mut st.join.session, "lobby"),
                    ("Token", &mut st.join.token, "leave empty for an open relay"),
                    (
                        "Fingerprint",
                        &mut st.join.fingerprint,
                        "64 hex digits (pins the relay's certificate)",
                    ),
                ] {
                    edited |= super::labelled_field(ui, label, value, hint).changed();
                }
            });
        if edited {
            // An old error is about what was there before.
            st.join.error = None;
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let join = ui.add_enabled(!connecting, egui::Button::new("Join"));
            let enter = ui.input(|i| i.key_pressed(egui::Key::Enter)) && !connecting;
            if join.clicked() || enter {
                match st.join.options(&st.settings.name) {
                    Ok(options) => command = Some(Command::Connect(options)),
                    Err(e) => st.join.error = Some(e),
                }
            }
            if let ConnState::Connecting { address } = &st.conn {
                ui.spinner();
                ui.label(format!("Connecting to {address}…"));
                if ui.button("Cancel").clicked() {
                    command = Some(Command::CancelConnect);
                }
            } else {
                // Which of the two joins, when both are filled in.
                let details = !st.join.address.trim().is_empty();
                if !st.join.invite.trim().is_empty() {
                    ui.weak(if details {
                        "joins with the invite (the details below are not used)"
                    } else {
                        "joins with the invite"
                    });
                } else if details {
                    ui.weak("joins with the relay's details");
                }
            }
        });
        if let Some(e) = &st.join.error {
            let (headline, details) = crate::state::explain(e);
            super::error_text(ui, &headline);
            if let Some(details) = details {
                egui::CollapsingHeader::new("Details")
                    .id_salt("join-error-details")
                    .default_open(false)
                    .show(ui, |ui| {
                        ui.add(
                            egui::Label::new(egui::RichText::new(details).weak()).selectable(true),
                        );
                    });
            }
        }
        if let ConnState::Disconnected { reason, message } = &st.conn {
            let (color, text) = super::status::disconnected(*reason, message);
            ui.colored_label(color, text);
        }
    });
    ui.add_space(12.0);
    if let Some(c) = nearby_relays(ui, st, connecting) {
        command = Some(c);
    }
    ui.add_space(12.0);
    if !st.settings.recent.is_empty() {
        ui.label(egui::RichText::new("Recent relays").strong());
        let mut chosen = None;
        for recent in &st.settings.recent {
            if ui
                .button(&recent.label)
                .on_hover_text("Fill in this invite")
                .clicked()
            {
                chosen = Some(recent.invite.clone());
            }
        }
        if let Some(invite) = chosen {
            st.join.invite = invite;
            st.join.error = None;
        }
    }
    ui.add_space(12.0);
    if st.host.running.is_none() && ui.button("Host a relay on this machine…").clicked() {
        st.host.visible = true;
    }
    command
}

/// What the user did with a nearby relay.
enum NearbyAction {
    Fill(NearbyRelay),
    Join(NearbyRelay),
    AskTrust(String),
    Trust(NearbyRelay),
    CancelTrust,
}

/// Relays announcing themselves on the LAN: name, address, mode, fingerprint, when last heard
/// of and whether the fingerprint is the one remembered for the name; one click fills in the
/// form, or joins an open relay.
fn nearby_relays(ui: &mut egui::Ui, st: &mut AppState, connecting: bool) -> Option<Command> {
    ui.label(egui::RichText::new("Nearby relays").strong());
    if let Some(e) = &st.discovery_error {
        super::error_text(ui, e);
    } else if st.nearby.is_empty() {
        ui.weak("Looking for relays on your network…");
    }
    if !st.nearby.is_empty() {
        // Keep "found … ago" current.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(1));
    }
    let mut action = None;
    for entry in &st.nearby {
        let relay = &entry.relay;
        let a = &relay.announcement;
        let trust = st.trust(relay);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_max_width(640.0);
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new(&a.name).strong());
                ui.monospace(relay.address().to_string());
                ui.label(if a.open { "open" } else { "token" });
                ui.monospace(format!("fp {}", a.fingerprint.short()))
                    .on_hover_text(a.fingerprint.to_string());
                ui.weak(format!("found {} ago", age(entry.seen.elapsed())));
                match trust {
                    Trust::New => {
                        ui.weak("new");
                    }
                    Trust::Known => {
                        ui.colored_label(egui::Color32::from_rgb(90, 190, 110), "✔ known");
                    }
                    Trust::Changed { .. } => {
                        ui.colored_label(ui.visuals().error_fg_color, "⚠ fingerprint changed");
                    }
                }
            });
            if !a.sessions.is_empty() {
                let sessions: Vec<&str> = a.sessions.iter().map(|s| s.as_str()).collect();
                ui.weak(format!("sessions: {}", sessions.join(", ")));
            }
            if !a.compatible() {
                ui.weak(format!(
                    "speaks protocol {}; this app speaks {}",
                    a.protocol,
                    signalbox_proto::PROTOCOL_VERSION
                ));
                return;
            }
            match trust {
                Trust::Changed { remembered } => {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!(
                            "This name was seen before with fingerprint {}; now it shows {}. \
                             It may be another machine, a reinstalled relay — or someone \
                             pretending to be it.",
                            remembered.short(),
                            a.fingerprint.short()
                        ),
                    );
                    if st.confirm_trust.as_deref() == Some(relay.instance.as_str()) {
                        ui.label("Trust the new fingerprint only if you know why it changed.");
                        ui.horizontal(|ui| {
                            if ui.button("Trust the new fingerprint").clicked() {
                                action = Some(NearbyAction::Trust(relay.clone()));
                            }
                            if ui.button("Cancel").clicked() {
                                action = Some(NearbyAction::CancelTrust);
                            }
                        });
                    } else if ui.button("Trust the new fingerprint…").clicked() {
                        action = Some(NearbyAction::AskTrust(relay.instance.clone()));
                    }
                }
                Trust::New | Trust::Known => {
                    ui.horizontal(|ui| {
                        if ui
                            .button("Fill in")
                            .on_hover_text("Fill in the relay's address, fingerprint and session")
                            .clicked()
                        {
                            action = Some(NearbyAction::Fill(relay.clone()));
                        }
                        if a.open
                            && ui
                                .add_enabled(!connecting, egui::Button::new("Join now"))
                                .on_hover_text("Join it now, pinning this fingerprint")
                                .clicked()
                        {
                            action = Some(NearbyAction::Join(relay.clone()));
                        }
                    });
                }
            }
        });
    }
    match action? {
        NearbyAction::Fill(relay) => st.fill_from_nearby(&relay),
        NearbyAction::Join(relay) => return st.use_nearby(&relay).map(Command::Connect),
        NearbyAction::AskTrust(instance) => st.confirm_trust = Some(instance),
        NearbyAction::Trust(relay) => st.trust_changed(&relay),
        NearbyAction::CancelTrust => st.confirm_trust = None,
    }
    None
}

/// `12 s`, `3 min`, `2 h`.
fn age(d: std::time::Duration) -> String {
    match d.as_secs() {
        s @ 0..60 => format!("{s} s"),
        s @ 60..3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
