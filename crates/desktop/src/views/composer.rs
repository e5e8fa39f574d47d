//! The composer: target (everyone / one / several), type, data, Ctrl+Enter, Ping.

use signalbox_client::Signal;
use signalbox_proto::{Target, signal};

use crate::backend::Command;
use crate::state::{AppState, TargetChoice};

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

/// The composer.
pub fn composer(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.horizontal(|ui| {
        ui.label("To");
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
        .horizontal(|ui| {
            let l = ui.label("Data");
            ui.add(
                egui::TextEdit::multiline(&mut st.composer.data)
                    .desired_rows(2)
                    .desired_width(f32::INFINITY)
                    .hint_text("the message (Ctrl+Enter sends)"),
            )
            .labelled_by(l.id)
        })
        .inner;
    let check = composed(st);
    ui.horizontal(|ui| {
        let ctrl_enter = data.has_focus()
            && ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));
        let send = ui.add_enabled(st.is_connected(), egui::Button::new("Send"));
        if send.clicked() || ctrl_enter {
            match &check {
                Ok(signal) => {
                    st.composer.error = None;
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
        ui.small(format!(
            "{} / {} bytes",
            st.composer.data.len(),
            st.limits.max_data_bytes
        ));
    });
    // The rule that fails is shown as soon as it fails, before any send.
    match (&check, &st.composer.error) {
        (Err(rule), _) if !(st.composer.r#type.is_empty() && st.composer.data.is_empty()) => {
            super::error_text(ui, rule);
        }
        (_, Some(e)) => super::error_text(ui, e),
        _ => {}
    }
    command
}
