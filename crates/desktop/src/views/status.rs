//! The top bar and the status bar.

use super::symbols;
use crate::backend::Command;
use crate::settings::Theme;
use signalbox_proto::LeftReason;

use crate::state::{AppState, ConnState, Tab};

/// Title, session, tabs, host toggle, theme, leave.
pub fn top_bar(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.horizontal(|ui| {
        ui.heading("Signalbox");
        if let (Some(session), Some(me)) = (&st.session, &st.me)
            && st.is_connected()
        {
            ui.separator();
            ui.label(format!("session {session} · {}", me.name));
            ui.separator();
            ui.selectable_value(&mut st.tab, Tab::Log, "Signals");
            ui.selectable_value(&mut st.tab, Tab::Chat, "Chat");
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if st.is_connected() && ui.button("Leave").clicked() {
                command = Some(Command::Disconnect);
            }
            let host_label = if st.host.running.is_some() {
                "Hosting"
            } else {
                "Host"
            };
            if ui
                .selectable_label(st.host.visible, host_label)
                .on_hover_text("Run a relay in this app")
                .clicked()
            {
                st.host.visible = !st.host.visible;
            }
            let theme = match st.settings.theme {
                Theme::Dark => format!("{} Light", symbols::LIGHT),
                Theme::Light => format!("{} Dark", symbols::DARK),
            };
            if ui.small_button(theme).clicked() {
                st.settings.theme = match st.settings.theme {
                    Theme::Dark => Theme::Light,
                    Theme::Light => Theme::Dark,
                };
            }
        });
    });
    command
}

/// Connection state, round-trip time, signals per second.
pub fn status_bar(ui: &mut egui::Ui, st: &mut AppState) {
    ui.horizontal(|ui| {
        let (dot, text) = match &st.conn {
            ConnState::Idle => (egui::Color32::GRAY, "Not connected".to_owned()),
            ConnState::Connecting { address } => {
                (egui::Color32::YELLOW, format!("Connecting to {address}…"))
            }
            ConnState::Connected { address } => (
                egui::Color32::from_rgb(60, 200, 90),
                format!(
                    "Connected to {} at {address}",
                    st.session.as_ref().map(|s| s.as_str()).unwrap_or("")
                ),
            ),
            ConnState::Reconnecting { address, message } => (
                egui::Color32::from_rgb(240, 170, 40),
                format!("Reconnecting to {address}… ({message})"),
            ),
            ConnState::Disconnected { reason, message } => disconnected(*reason, message),
        };
        let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
        ui.painter().circle_filled(rect.center(), 4.5, dot);
        ui.label(text);
        if st.is_connected() {
            ui.separator();
            match st.stats.rtt {
                Some(rtt) => ui.label(format!("RTT {:.1} ms", rtt.as_secs_f64() * 1000.0)),
                None => ui.label("RTT —"),
            };
            ui.separator();
            let (i, o) = st.stats.per_second;
            ui.label(format!("in {i:.0}/s · out {o:.0}/s"));
        }
        if let Some(info) = &st.host.running {
            ui.separator();
            ui.label(format!("hosting :{}", info.quic_addr.port()));
        }
        if let Some(left) = st.expire_notice(std::time::Instant::now()) {
            // Wake up when a transient notice is due to go.
            ui.ctx().request_repaint_after(left);
        }
        if let Some(notice) = st.notice.clone() {
            ui.separator();
            ui.label(notice);
            if ui
                .small_button(symbols::DISMISS)
                .on_hover_text("Dismiss")
                .clicked()
            {
                st.notice = None;
                st.notice_until = None;
            }
        }
    });
}

/// The status of a connection that ended, in words: leaving on purpose is not an error.
pub(super) fn disconnected(reason: Option<LeftReason>, message: &str) -> (egui::Color32, String) {
    let red = egui::Color32::from_rgb(220, 80, 60);
    let amber = egui::Color32::from_rgb(240, 170, 40);
    match reason {
        Some(LeftReason::ClientDisconnected) => (egui::Color32::GRAY, "Left the session".into()),
        Some(LeftReason::RelayShutdown) => (amber, "The relay stopped".into()),
        Some(LeftReason::ForceDisconnected) => {
            (red, format!("Removed from the session: {message}"))
        }
        Some(LeftReason::SlowConsumer) => (
            red,
            "Disconnected: this app did not keep up with the signals".into(),
        ),
        Some(LeftReason::NetworkDisconnected) | None => {
            (red, format!("Connection lost: {message}"))
        }
    }
}
