//! The eframe app: drains backend events into the state, draws the views, sends commands.

use crate::backend::{Backend, Command};
use crate::settings::{Settings, Theme};
use crate::state::{AppState, Tab};
use crate::views;

/// Key of the settings in eframe's storage.
const SETTINGS_KEY: &str = "signalbox-settings";
/// Events applied per frame at most (the rest next frame), so drawing stays smooth under floods.
const EVENTS_PER_FRAME: usize = 20_000;

/// The desktop app.
#[derive(Debug)]
pub struct SignalboxApp {
    /// What the app shows.
    pub state: AppState,
    backend: Backend,
}

impl SignalboxApp {
    /// An app with these settings and a fresh backend thread.
    pub fn new(settings: Settings) -> Self {
        Self {
            state: AppState::new(settings),
            backend: Backend::spawn(),
        }
    }

    /// The app as eframe creates it: settings from its storage.
    pub fn from_storage(storage: Option<&dyn eframe::Storage>) -> Self {
        let settings = storage
            .and_then(|s| eframe::get_value::<Settings>(s, SETTINGS_KEY))
            .unwrap_or_default();
        Self::new(settings)
    }

    /// Sends a command to the backend (the views' way, and the tests' and demo's).
    pub fn command(&mut self, command: Command) {
        self.backend.send(command);
    }

    /// Applies waiting backend events; returns how many.
    pub fn pump(&mut self) -> usize {
        let mut n = 0;
        while n < EVENTS_PER_FRAME {
            match self.backend.try_event() {
                Some(e) => self.state.apply(e),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// Draws one frame into `ui`.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.backend.set_context(&ctx);
        if self.pump() == EVENTS_PER_FRAME {
            ctx.request_repaint();
        }
        ctx.set_theme(match self.state.settings.theme {
            Theme::Dark => egui::Theme::Dark,
            Theme::Light => egui::Theme::Light,
        });
        let st = &mut self.state;
        let mut commands: Vec<Command> = Vec::new();
        close_while_hosting(&ctx, st, &mut commands);
        egui::Panel::top("top").show(ui, |ui| commands.extend(views::top_bar(ui, st)));
        egui::Panel::bottom("status").show(ui, |ui| views::status_bar(ui, st));
        if st.host.visible {
            egui::Panel::right("host")
                .default_size(300.0)
                .show(ui, |ui| {
                    // Taller than a small window once it runs (two invites): it scrolls.
                    egui::ScrollArea::vertical()
                        .id_salt("host-scroll")
                        .show(ui, |ui| commands.extend(views::host_panel(ui, st)));
                });
        }
        if st.is_connected() {
            egui::Panel::left("people")
                .default_size(190.0)
                .show(ui, |ui| commands.extend(views::participants(ui, st)));
            egui::Panel::right("pad")
                .default_size(230.0)
                .show(ui, |ui| commands.extend(views::control_pad(ui, st)));
            match st.tab {
                Tab::Log => {
                    egui::Panel::bottom("composer").show(ui, |ui| {
                        ui.add_space(4.0);
                        commands.extend(views::composer(ui, st));
                    });
                    egui::CentralPanel::default().show(ui, |ui| views::log_view(ui, st));
                }
                Tab::Chat => {
                    egui::CentralPanel::default()
                        .show(ui, |ui| commands.extend(views::chat_view(ui, st)));
                }
            }
            commands.extend(views::pad_key_command(&ctx, st));
        } else {
            egui::CentralPanel::default().show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .show(ui, |ui| commands.extend(views::join_screen(ui, st)));
            });
        }
        for c in commands {
            self.backend.send(c);
        }
    }
}

/// Closing the window while the app hosts a relay asks whether to keep hosting: in the
/// background (the same relay, port and invites, in a process of its own), or not.
fn close_while_hosting(ctx: &egui::Context, st: &mut AppState, commands: &mut Vec<Command>) {
    let hosting = st.host.running.clone();
    if ctx.input(|i| i.viewport().close_requested())
        && hosting.is_some()
        && !st.host.close_confirmed
    {
        ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        st.host.asking_close = true;
    }
    if st.host.close_confirmed && st.host.close_after_move {
        // The relay runs in the background now.
        st.host.close_after_move = false;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
    if !st.host.asking_close {
        return;
    }
    let Some(info) = hosting else {
        st.host.asking_close = false;
        return;
    };
    egui::Modal::new(egui::Id::unique("keep-hosting")).show(ctx, |ui| {
        ui.heading("Keep hosting?");
        ui.label(format!(
            "This app hosts the relay of session {}. Keep it running after the window closes?",
            info.invite.session
        ));
        ui.weak("In the background, the same invites keep working; the app shows it again when it starts.");
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Keep hosting in the background").clicked() {
                st.host.asking_close = false;
                match st.host.start_options(&st.settings, info.invite.session.clone()) {
                    Some(options) => {
                        st.host.busy = true;
                        st.host.close_after_move = true;
                        commands.push(Command::MoveToBackground(options));
                    }
                    None => st.host.error = Some("no data directory for the relay".into()),
                }
            }
            if ui.button("Stop hosting and close").clicked() {
                st.host.asking_close = false;
                st.host.close_confirmed = true;
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
            if ui.button("Cancel").clicked() {
                st.host.asking_close = false;
            }
        });
    });
}

impl eframe::App for SignalboxApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.state.settings);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::settings::{PadButton, PadTarget};

    /// eframe's storage, in memory.
    #[derive(Default)]
    struct Memory(HashMap<String, String>);

    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn settings_survive_a_restart() {
        let mut storage = Memory::default();
        let mut first = SignalboxApp::new(Settings::default());
        first.state.settings.name = "ann".into();
        first.state.settings.theme = Theme::Light;
        first.state.settings.pad.push(PadButton {
            label: "Lights".into(),
            target: PadTarget::Named("lamp".into()),
            r#type: "switch".into(),
            data: "on".into(),
            key: Some("L".into()),
        });
        first
            .state
            .settings
            .remember("signalbox://h:1/s", "s @ h:1".into());
        eframe::App::save(&mut first, &mut storage);
        let second = SignalboxApp::from_storage(Some(&storage));
        assert_eq!(second.state.settings, first.state.settings);
        // No storage: defaults.
        assert_eq!(
            SignalboxApp::from_storage(None).state.settings,
            Settings::default()
        );
    }
}
