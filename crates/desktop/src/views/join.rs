//! The join screen: paste an invite, or enter the relay's details; recent relays.

use crate::backend::Command;
use crate::state::{AppState, ConnState};

/// The join screen.
pub fn join_screen(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.vertical_centered(|ui| {
        ui.add_space(16.0);
        ui.heading("Join a session");
        ui.label("Paste the invite you were given, or enter the relay's details.");
    });
    ui.add_space(12.0);
    let connecting = matches!(st.conn, ConnState::Connecting { .. });
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_max_width(640.0);
        super::labelled_field(
            ui,
            "Invite",
            &mut st.join.invite,
            "signalbox://host:4433/session?fp=…&token=…",
        );
        super::labelled_field(ui, "Your name", &mut st.settings.name, "how others see you");
        egui::CollapsingHeader::new("Or enter the relay's details")
            .default_open(false)
            .show(ui, |ui| {
                super::labelled_field(
                    ui,
                    "Relay address",
                    &mut st.join.address,
                    "192.168.1.20:4433",
                );
                super::labelled_field(ui, "Session", &mut st.join.session, "lobby");
                super::labelled_field(
                    ui,
                    "Token",
                    &mut st.join.token,
                    "leave empty for an open relay",
                );
                super::labelled_field(
                    ui,
                    "Fingerprint",
                    &mut st.join.fingerprint,
                    "64 hex digits (pins the relay's certificate)",
                );
            });
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
            }
        });
        if let Some(e) = &st.join.error {
            super::error_text(ui, e);
        }
        if let ConnState::Disconnected { reason, message } = &st.conn {
            let why = reason.map(|r| r.to_string()).unwrap_or_default();
            ui.label(format!("Disconnected ({why}): {message}"));
        }
    });
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
