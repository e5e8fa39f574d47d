//! The composer: target (everyone / one / several), type, data (typed, pasted, or a file),
//! Ctrl+Enter, Ping. Its height never changes: the data box scrolls inside a bounded height,
//! and one line is always kept for the rule a signal breaks, so nothing moves under the mouse
//! and Send stays in view whatever is pasted.

use signalbox_client::Signal;
use signalbox_proto::{Target, signal};

use crate::backend::Command;
use crate::state::{AppState, TargetChoice, read_attachment};

/// The data box's height: about five lines; more scrolls inside it.
const DATA_HEIGHT: f32 = 84.0;

/// The signal the composer describes, or the rule it breaks.
pub(crate) fn composed(st: &AppState) -> Result<Signal, String> {
    let c = &st.composer;
    let to = match &c.target {
        TargetChoice::Everyone => Target::All,
        TargetChoice::One(Some(id)) => Target::One(*id),
        TargetChoice::One(None) => return Err("choose who to send to".into()),
        TargetChoice::Several(ids) if ids.is_empty() => {
            return Err("choose at least one participant".into());
        }
        TargetChoice::Several(ids) => Target::List(ids.iter().copied().collect()),
    };
    signal::validate_type(&c.r#type).map_err(|e| e.to_string())?;
    signal::validate_data(&c.data, &st.limits).map_err(|e| e.to_string())?;
    Ok(Signal {
        to,
        r#type: c.r#type.clone(),
        data: c.data.clone(),
    })
}

/// Takes a file as the data, or says why not (its size is checked before it is read).
fn attach(st: &mut AppState, path: &std::path::Path) {
    match read_attachment(path, st.limits.max_data_bytes) {
        Ok(text) => {
            st.composer.data = text;
            st.composer.error = None;
            st.composer.note = Some(format!("attached {}", path.display()));
            st.composer.attaching = false;
        }
        Err(e) => {
            st.composer.error = Some(e);
            st.composer.attaching = false;
        }
    }
}

/// The composer.
pub fn composer(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    // A file dropped on the window becomes the data.
    let dropped = ui.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
    if let Some(path) = dropped {
        attach(st, &path);
    }
    ui.horizontal(|ui| {
        ui.label("To:");
        let t = &mut st.composer.target;
        if ui
            .radio(matches!(t, TargetChoice::Everyone), "Everyone")
            .clicked()
        {
            *t = TargetChoice::Everyone;
        }
        if ui.radio(matches!(t, TargetChoice::One(_)), "One").clicked()
            && !matches!(t, TargetChoice::One(_))
        {
            *t = TargetChoice::One(None);
        }
        if ui
            .radio(matches!(t, TargetChoice::Several(_)), "Several")
            .clicked()
            && !matches!(t, TargetChoice::Several(_))
        {
            *t = TargetChoice::Several(Default::default());
        }
        let chosen_name = match &st.composer.target {
            TargetChoice::One(Some(id)) => st.name_of(Some(*id)),
            _ => "choose…".into(),
        };
        match &mut st.composer.target {
            TargetChoice::One(chosen) => {
                let label = chosen_name;
                egui::ComboBox::from_label("Recipient")
                    .selected_text(label)
                    .show_ui(ui, |ui| {
                        if let Some(me) = &st.me {
                            ui.selectable_value(chosen, Some(me.id), format!("{} (you)", me.name));
                        }
                        for p in &st.peers {
                            ui.selectable_value(chosen, Some(p.id), &p.name);
                        }
                    });
            }
            TargetChoice::Several(ids) => {
                for p in &st.peers {
                    let mut on = ids.contains(&p.id);
                    if ui.checkbox(&mut on, &p.name).changed() {
                        if on {
                            ids.insert(p.id);
                        } else {
                            ids.remove(&p.id);
                        }
                    }
                }
            }
            TargetChoice::Everyone => {}
        }
    });
    super::labelled_field(
        ui,
        "Type",
        &mut st.composer.r#type,
        "e.g. chat, robot, cursor",
    );
    let data = ui
        .horizontal_top(|ui| {
            let l = ui.label("Data");
            egui::ScrollArea::vertical()
                .id_salt("composer-data")
                .max_height(DATA_HEIGHT)
                .min_scrolled_height(DATA_HEIGHT)
                // Always the same height, empty or full: nothing above or below it moves.
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.add(
                        egui::TextEdit::multiline(&mut st.composer.data)
                            .desired_rows(4)
                            .desired_width(f32::INFINITY)
                            .hint_text("the message (Ctrl+Enter sends), or drop a file here"),
                    )
                    .labelled_by(l.id)
                })
                .inner
        })
        .inner;
    if data.changed() {
        st.composer.note = None;
    }
    let check = composed(st);
    ui.horizontal(|ui| {
        let ctrl_enter = data.has_focus()
            && ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));
        let send = ui.add_enabled(st.is_connected(), egui::Button::new("Send"));
        if send.clicked() || ctrl_enter {
            match &check {
                Ok(signal) => {
                    st.composer.error = None;
                    st.composer.note = None;
                    command = Some(st.send(signal.clone()));
                }
                Err(e) => st.composer.error = Some(e.clone()),
            }
        }
        if ui
            .add_enabled(st.is_connected(), egui::Button::new("Ping"))
            .on_hover_text("A signal with no type and no data: it only says who you are")
            .clicked()
        {
            command = Some(st.send(Signal::ping()));
        }
        if ui
            .button("Attach file…")
            .on_hover_text(
                "Send a text file's content as the data (or drop the file on the window)",
            )
            .clicked()
        {
            st.composer.attaching = !st.composer.attaching;
        }
        let len = st.composer.data.len();
        let limit = st.limits.max_data_bytes;
        let counter = format!("{len} / {limit} bytes");
        if len > limit as usize {
            ui.colored_label(ui.visuals().error_fg_color, counter);
        } else {
            ui.small(counter);
        }
    });
    // One line always kept for the attach field, the rule that fails (shown as soon as it
    // fails, before any send), a relay's refusal, or a quiet note: the composer never
    // changes height.
    let line = ui.spacing().interact_size.y + 2.0;
    ui.allocate_ui(egui::vec2(ui.available_width(), line), |ui| {
        ui.set_min_height(line);
        if st.composer.attaching {
            ui.horizontal(|ui| {
                let l = ui.label("File");
                let field = ui
                    .add(
                        egui::TextEdit::singleline(&mut st.composer.attach_path)
                            .hint_text("/path/to/file.json")
                            .desired_width(280.0),
                    )
                    .labelled_by(l.id);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Attach").clicked() || enter {
                    let path = std::path::PathBuf::from(st.composer.attach_path.trim());
                    attach(st, &path);
                }
                if ui.button("Cancel").clicked() {
                    st.composer.attaching = false;
                }
            });
            return;
        }
        match (&check, &st.composer.error, &st.composer.note) {
            (Err(rule), _, _)
                if !(st.composer.r#type.is_empty() && st.composer.data.is_empty()) =>
            {
                super::error_text(ui, rule);
            }
            (_, Some(e), _) => super::error_text(ui, e),
            (_, None, Some(note)) => {
                ui.weak(note);
            }
            _ => {}
        }
    });
    command
}
