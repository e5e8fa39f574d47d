//! The participant list.

use crate::backend::Command;
use crate::state::{AppState, TargetChoice};

/// Who is in the session; moderators may remove others.
pub fn participants(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    ui.heading(format!(
        "People ({})",
        st.peers.len() + usize::from(st.me.is_some())
    ));
    ui.separator();
    if let Some(me) = &st.me {
        ui.label(format!("{} (you)", me.name))
            .on_hover_text(format!("{}\n{}\n{}", me.id, me.role, me.data));
        ui.small(format!("{} · {}", me.role, me.id.short()));
        ui.add_space(4.0);
    }
    if st.peers.is_empty() {
        ui.weak("Nobody else is here yet.");
    }
    let moderator = st.is_moderator();
    let mut pick = None;
    let mut confirm = None;
    let mut remove = None;
    // A name that could pass for another member's, or for the app's words, shows its id.
    let labels: Vec<String> = st.peers.iter().map(|p| st.name_of(Some(p.id))).collect();
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (p, label) in st.peers.iter().zip(&labels) {
            ui.horizontal(|ui| {
                let name = ui
                    .selectable_label(false, label)
                    .on_hover_text(format!("{}\nrole: {}\n{}", p.id, p.role, p.data));
                if name.clicked() {
                    pick = Some(p.id);
                }
                if moderator
                    && st.confirm_remove != Some(p.id)
                    && ui
                        .small_button("Remove")
                        .on_hover_text(format!("Remove {} from the session", p.name))
                        .clicked()
                {
                    confirm = Some(Some(p.id));
                }
            });
            if st.confirm_remove == Some(p.id) {
                // Removing someone is not undone: ask first.
                ui.horizontal(|ui| {
                    ui.label(format!("Remove {label}?"));
                    if ui.small_button("Yes, remove").clicked() {
                        remove = Some(p.id);
                    }
                    if ui.small_button("Cancel").clicked() {
                        confirm = Some(None);
                    }
                });
            }
            ui.small(format!("{} · {}", p.role, p.id.short()));
        }
    });
    if let Some(c) = confirm {
        st.confirm_remove = c;
    }
    if let Some(id) = remove {
        command = Some(st.remove(id));
    }
    if let Some(id) = pick {
        // Clicking a name addresses the next signal to that person.
        st.composer.target = TargetChoice::One(Some(id));
        st.chat_to = Some(id);
    }
    command
}
