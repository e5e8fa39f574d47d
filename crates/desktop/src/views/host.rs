//! The host panel: run a relay inside the app, share its invite.

use signalbox_client::ConnectOptions;
use signalbox_proto::{Invite, SessionId};

use crate::backend::Command;
use crate::state::AppState;

/// Start/stop the in-process relay; its addresses, fingerprint and invite.
pub fn host_panel(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.horizontal(|ui| {
        ui.heading("Host a relay");
        if ui.small_button("Hide").clicked() {
            st.host.visible = false;
        }
    });
    ui.separator();
    if let Some(view) = st.host.background.clone() {
        command = background_panel(ui, st, &view);
        if let Some(e) = &st.host.error {
            super::error_text(ui, e);
        }
        return command;
    }
    match st.host.running.clone() {
        None => {
            ui.label("Run a relay in this app, so others on your network can join you.");
            ui.horizontal(|ui| {
                let l = ui.label("Port");
                ui.add(egui::DragValue::new(&mut st.settings.host_port).range(0..=65535))
                    .labelled_by(l.id);
            });
            super::labelled_field(ui, "Session", &mut st.settings.host_session, "lobby");
            ui.checkbox(
                &mut st.settings.host_open,
                "Open (anyone who can reach it may join, without an invite)",
            )
            .on_hover_text("Off (the default): joining needs a token; share the participant invite, which carries one");
            ui.checkbox(
                &mut st.settings.host_announce,
                "Announce on the LAN (people nearby see it in their join screen)",
            )
            .on_hover_text("mDNS / DNS-SD: its name, address, fingerprint, mode and this session");
            ui.checkbox(
                &mut st.settings.host_background,
                "Keep it running after this window closes",
            )
            .on_hover_text(
                "Runs the relay as a process of its own; the app finds it again when it starts",
            );
            ui.add_enabled_ui(st.settings.host_background, |ui| {
                ui.checkbox(&mut st.settings.host_autostart, "Start it when I log in")
                    .on_hover_text("Adds an entry to your desktop's autostart");
            });
            let session = SessionId::new(st.settings.host_session.trim());
            if let Err(e) = &session {
                super::error_text(ui, &e.to_string());
            }
            let start = ui.add_enabled(
                !st.host.busy && session.is_ok(),
                egui::Button::new("Start relay"),
            );
            if start.clicked()
                && let Ok(session) = session
            {
                st.host.busy = true;
                st.host.error = None;
                if st.settings.host_background {
                    match st.host.start_options(&st.settings, session) {
                        Some(options) => {
                            command = Some(Command::StartBackground {
                                options,
                                autostart: st.settings.host_autostart,
                            });
                        }
                        None => {
                            st.host.busy = false;
                            st.host.error = Some("no data directory for the relay".into());
                        }
                    }
                } else {
                    command = Some(Command::StartHost {
                        port: st.settings.host_port,
                        open: st.settings.host_open,
                        session,
                        loopback_only: st.host.loopback_only,
                        data_dir: st.host.data_dir.clone(),
                        announce: st.settings.host_announce,
                        mdns_port: st.host.mdns_port,
                    });
                }
            }
            if st.host.busy {
                ui.spinner();
            }
        }
        Some(info) => {
            ui.label(format!(
                "Running on UDP port {} ({} mode).",
                info.quic_addr.port(),
                if info.open { "open" } else { "token" }
            ));
            ui.label(egui::RichText::new("Addresses").strong());
            if info.lan.is_empty() {
                ui.weak("no LAN address (loopback only)");
            }
            for ip in &info.lan {
                ui.monospace(std::net::SocketAddr::new(*ip, info.quic_addr.port()).to_string());
            }
            match &info.announced_as {
                Some(name) => ui.label(format!("Announced on the LAN as \u{201c}{name}\u{201d}.")),
                None => ui.weak("Not announced on the LAN."),
            };
            ui.label(egui::RichText::new("Fingerprint").strong());
            ui.monospace(info.fingerprint.short())
                .on_hover_text(info.fingerprint.to_string());
            invites(ui, st, &info.invite, &info.moderator_invite);
            if let Some(link) = &info.web_link {
                web_link(ui, st, link);
            }
            if ui.button("Join my relay").clicked() {
                command = Some(join_mine(st, &info.local_invite));
            }
            ui.add_space(6.0);
            if ui
                .add_enabled(!st.host.busy, egui::Button::new("Stop relay"))
                .clicked()
            {
                st.host.busy = true;
                command = Some(Command::StopHost);
            }
        }
    }
    if let Some(e) = &st.host.error {
        super::error_text(ui, e);
    }
    command
}

/// The two invites of a hosted relay: the participants' first (to hand out), the
/// moderator's second (to keep), each shown whole with Copy.
fn invites(ui: &mut egui::Ui, st: &mut AppState, participant: &Invite, moderator: &Invite) {
    for (title, advice, invite, copy, copied) in [
        (
            "Invite for participants",
            "Hand this one out: it lets people join and send.",
            participant,
            "Copy invite",
            "Invite copied.",
        ),
        (
            "Moderator invite",
            "Keep this one: whoever holds it can remove anyone.",
            moderator,
            "Copy moderator invite",
            "Moderator invite copied.",
        ),
    ] {
        ui.label(egui::RichText::new(title).strong());
        ui.weak(advice);
        let text = invite.to_string();
        invite_text(ui, &text);
        if ui.button(copy).clicked() {
            ui.ctx().copy_text(text);
            st.notify(copied);
        }
        ui.add_space(4.0);
    }
}

/// The link that opens the session in a browser, with a QR code for phones.
fn web_link(ui: &mut egui::Ui, st: &mut AppState, link: &str) {
    ui.label(egui::RichText::new("Web link for browsers").strong());
    ui.weak("A phone or laptop with only a browser joins by opening this link (scan the code).");
    invite_text(ui, link);
    if ui.button("Copy web link").clicked() {
        ui.ctx().copy_text(link.to_owned());
        st.notify("Web link copied.");
    }
    qr_code(ui, link);
    ui.add_space(4.0);
}

/// `text` as a QR code, dark on a light square (scanners need the contrast and the quiet
/// zone whatever the theme).
fn qr_code(ui: &mut egui::Ui, text: &str) {
    // The lowest error correction keeps a long link's code coarse enough for a phone's
    // camera at arm's length (a screen does not get dirty).
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L)
    else {
        ui.weak("(the link is too long for a QR code)");
        return;
    };
    let modules = code.width();
    let colors = code.to_colors();
    let quiet = 2;
    let side = (modules + 2 * quiet) as f32;
    let cell = (260.0 / side).floor().max(3.0);
    let (rect, response) =
        ui.allocate_exact_size(egui::vec2(side * cell, side * cell), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, egui::Color32::WHITE);
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = ((i % modules + quiet) as f32, (i / modules + quiet) as f32);
            let min = rect.min + egui::vec2(x * cell, y * cell);
            painter.rect_filled(
                egui::Rect::from_min_size(min, egui::vec2(cell, cell)),
                0.0,
                egui::Color32::BLACK,
            );
        }
    }
    response.on_hover_text(text);
}

/// Joins the relay this machine hosts, over loopback, under the app's name.
fn join_mine(st: &AppState, local_invite: &Invite) -> Command {
    let mut options = ConnectOptions::from_invite(local_invite);
    if !st.settings.name.trim().is_empty() {
        options.name = Some(st.settings.name.trim().to_owned());
    }
    Command::Connect(options)
}

/// An invite as people copy it: monospace, wrapped, selectable.
fn invite_text(ui: &mut egui::Ui, invite: &str) {
    ui.add(
        egui::Label::new(egui::RichText::new(invite).monospace())
            .wrap()
            .selectable(true),
    );
}

/// A relay running from this machine's data directory in another process: where, its
/// invites, who is there (with Remove), Join, Stop.
fn background_panel(
    ui: &mut egui::Ui,
    st: &mut AppState,
    view: &crate::background::BackgroundView,
) -> Option<Command> {
    let mut command = None;
    ui.label(format!(
        "Running in the background (process {}) on UDP port {}; it keeps running when this \
         window closes.",
        view.relay.pid,
        view.relay.quic.port()
    ));
    if let Some(fp) = &view.invite.fingerprint {
        ui.label(egui::RichText::new("Fingerprint").strong());
        ui.monospace(fp.short()).on_hover_text(fp.to_string());
    }
    invites(ui, st, &view.invite, &view.moderator_invite);
    ui.label(
        egui::RichText::new(format!(
            "In session {} ({})",
            view.session,
            view.people.len()
        ))
        .strong(),
    );
    if view.people.is_empty() {
        ui.weak("Nobody yet.");
    }
    for p in &view.people {
        ui.horizontal(|ui| {
            ui.label(&p.name)
                .on_hover_text(format!("{}\n{}", p.id, p.role));
            if st.host.confirm_kick == Some(p.id) {
                if ui.small_button("Yes, remove").clicked() {
                    st.host.confirm_kick = None;
                    command = Some(Command::KickBackground(p.id));
                }
                if ui.small_button("Cancel").clicked() {
                    st.host.confirm_kick = None;
                }
            } else if ui
                .small_button("Remove")
                .on_hover_text(format!("Remove {} from the session", p.name))
                .clicked()
            {
                st.host.confirm_kick = Some(p.id);
            }
        });
    }
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if ui.button("Join my relay").clicked() {
            command = Some(join_mine(st, &view.local_invite));
        }
        if ui
            .add_enabled(!st.host.busy, egui::Button::new("Stop relay"))
            .clicked()
        {
            st.host.busy = true;
            command = Some(Command::StopBackground);
        }
    });
    command
}
