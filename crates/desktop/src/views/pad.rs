//! The control pad: user-defined buttons that send a fixed signal, optionally on a key.

use signalbox_client::Signal;

use crate::backend::Command;
use crate::settings::{PadButton, PadTarget};
use crate::state::AppState;

/// The signal a pad button sends, if its target is present.
fn pad_signal(st: &AppState, b: &PadButton) -> Result<Signal, String> {
    match &b.target {
        PadTarget::Everyone => Ok(Signal::to_all(&b.r#type, &b.data)),
        PadTarget::Named(name) => st
            .peer_named(name)
            .map(|p| Signal::to_one(p.id, &b.r#type, &b.data))
            .ok_or_else(|| format!("{name} is not in the session")),
    }
}

fn press(st: &mut AppState, index: usize) -> Option<Command> {
    let b = st.settings.pad.get(index)?.clone();
    match pad_signal(st, &b) {
        Ok(signal) => Some(st.send(signal)),
        Err(e) => {
            st.notify(e);
            None
        }
    }
}

/// A pad key pressed while no text field has focus.
pub fn pad_key_command(ctx: &egui::Context, st: &mut AppState) -> Option<Command> {
    if !st.is_connected() || st.editing_pad || ctx.memory(|m| m.focused().is_some()) {
        return None;
    }
    let index = st.settings.pad.iter().position(|b| {
        b.egui_key()
            .is_some_and(|k| ctx.input(|i| i.key_pressed(k)))
    })?;
    press(st, index)
}

/// The pad, or its editor.
pub fn control_pad(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.horizontal(|ui| {
        ui.heading("Control pad");
        let label = if st.editing_pad { "Done" } else { "Edit" };
        if ui.small_button(label).clicked() {
            st.editing_pad = !st.editing_pad;
        }
    });
    ui.separator();
    if st.editing_pad {
        // Five cards do not fit a small window: the editor scrolls, "Add button" included.
        egui::ScrollArea::vertical()
            .id_salt("pad-editor")
            .auto_shrink([false, false])
            .show(ui, |ui| edit(ui, st));
        return None;
    }
    if st.settings.pad.is_empty() {
        ui.weak("No buttons. Press Edit to add some.");
    }
    let connected = st.is_connected();
    let mut pressed = None;
    egui::Grid::new("pad")
        .num_columns(2)
        .spacing([6.0, 6.0])
        .show(ui, |ui| {
            for (i, b) in st.settings.pad.iter().enumerate() {
                let key = b
                    .key
                    .as_deref()
                    .map(|k| format!(" [{k}]"))
                    .unwrap_or_default();
                let button = ui
                    .add_enabled(
                        connected,
                        egui::Button::new(&b.label).min_size(egui::vec2(96.0, 28.0)),
                    )
                    .on_hover_text(format!("sends {} \"{}\"{key}", b.r#type, b.data));
                if button.clicked() {
                    pressed = Some(i);
                }
                if i % 2 == 1 {
                    ui.end_row();
                }
            }
        });
    if let Some(i) = pressed {
        command = press(st, i);
    }
    if connected && st.settings.pad.iter().any(|b| b.key.is_some()) {
        ui.add_space(4.0);
        ui.weak("Keys work when no text field has focus (Esc leaves a field).");
    }
    command
}

fn edit(ui: &mut egui::Ui, st: &mut AppState) {
    let mut remove = None;
    for (i, b) in st.settings.pad.iter_mut().enumerate() {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            super::labelled_field(ui, "Label", &mut b.label, "");
            super::labelled_field(ui, "Type", &mut b.r#type, "robot");
            super::labelled_field(ui, "Data", &mut b.data, "forward");
            let mut to = match &b.target {
                PadTarget::Everyone => String::new(),
                PadTarget::Named(n) => n.clone(),
            };
            if super::labelled_field(ui, "To", &mut to, "everyone (or a name)").changed() {
                b.target = if to.trim().is_empty() {
                    PadTarget::Everyone
                } else {
                    PadTarget::Named(to.trim().to_owned())
                };
            }
            let mut key = b.key.clone().unwrap_or_default();
            if super::labelled_field(ui, "Key", &mut key, "ArrowUp, Space, F1 …").changed() {
                b.key = (!key.trim().is_empty()).then(|| key.trim().to_owned());
            }
            if b.key.is_some() && b.egui_key().is_none() {
                super::error_text(ui, "not a key name (e.g. ArrowUp, Space, A, F1)");
            }
            if let Err(e) = signalbox_proto::signal::validate_type(&b.r#type) {
                super::error_text(ui, &e.to_string());
            }
            if ui.small_button("Remove button").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        st.settings.pad.remove(i);
    }
    if ui.button("Add button").clicked() {
        st.settings.pad.push(PadButton {
            label: "New".into(),
            target: PadTarget::Everyone,
            r#type: "command".into(),
            data: String::new(),
            key: None,
        });
    }
}
