//! The chat: `chat` signals as a conversation, with delivery and read receipts.

use signalbox_client::Signal;

use super::symbols;
use crate::backend::{CHAT_TYPE, Command};
use crate::log::Delivery;
use crate::state::AppState;

/// The conversation and its input line (Enter sends).
pub fn chat_view(ui: &mut egui::Ui, st: &mut AppState) -> Option<Command> {
    let mut command = None;
    let input_height = 64.0;
    let weak = ui.visuals().weak_text_color();
    let error = ui.visuals().error_fg_color;
    egui::ScrollArea::vertical()
        .max_height((ui.available_height() - input_height).max(40.0))
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show(ui, |ui| {
            if st.chat.is_empty() {
                ui.weak("No messages yet. Say hello below.");
            }
            let mut previous: Option<&crate::state::ChatMessage> = None;
            for m in &st.chat {
                // Consecutive messages of one sender to the same people share one header.
                let grouped =
                    previous.is_some_and(|p| p.mine == m.mine && p.from == m.from && p.to == m.to);
                previous = Some(m);
                ui.add_space(if grouped { 1.0 } else { 6.0 });
                let layout = if m.mine {
                    egui::Layout::right_to_left(egui::Align::Min)
                } else {
                    egui::Layout::left_to_right(egui::Align::Min)
                };
                ui.with_layout(layout, |ui| {
                    // As wide as the text (up to a reading width), not the whole row.
                    let bubble = egui::Frame::group(ui.style()).corner_radius(8.0);
                    // The widest line it holds (text, header, receipt), up to 420 px.
                    let body = egui::TextStyle::Body.resolve(ui.style());
                    let wide = |t: &str| {
                        ui.fonts_mut(|f| f.layout_no_wrap(t.to_owned(), body.clone(), weak))
                            .size()
                            .x
                    };
                    let header = format!(
                        "{}{} 00:00",
                        if m.mine { "me" } else { &m.from },
                        m.to.as_ref()
                            .map(|t| format!(" {} {t}", symbols::TO))
                            .unwrap_or_default()
                    );
                    let width = [wide(&m.text), wide(&header), wide("✔ read by 99"), 60.0]
                        .into_iter()
                        .fold(0.0f32, f32::max)
                        .min(420.0);
                    bubble.show(ui, |ui| {
                        ui.set_max_width(width);
                        ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                            if !grouped {
                                let to =
                                    m.to.as_ref()
                                        .map(|t| format!(" {} {t}", symbols::TO))
                                        .unwrap_or_default();
                                ui.horizontal(|ui| {
                                    ui.strong(format!(
                                        "{}{to}",
                                        if m.mine { "me" } else { &m.from }
                                    ));
                                    // hh:mm, the exact time on hover.
                                    ui.colored_label(weak, m.time.get(..5).unwrap_or(&m.time))
                                        .on_hover_text(&m.time);
                                });
                            }
                            ui.add(egui::Label::new(&m.text).wrap());
                            match &m.delivery {
                                Some(Delivery::Pending) => {
                                    ui.colored_label(weak, "sending…");
                                }
                                Some(Delivery::Accepted) => {
                                    let read = m.read_by.len();
                                    let text = if read == 0 {
                                        format!("{} sent", symbols::ACCEPTED)
                                    } else {
                                        format!("{} read by {read}", symbols::ACCEPTED)
                                    };
                                    ui.colored_label(weak, text);
                                }
                                Some(Delivery::Failed { code, message }) => {
                                    ui.colored_label(
                                        error,
                                        format!("{} error {code}: {message}", symbols::FAILED),
                                    );
                                }
                                None => {}
                            }
                        });
                    });
                });
            }
        });
    ui.separator();
    ui.horizontal(|ui| {
        let to_label = st
            .chat_to
            .map(|id| st.name_of(Some(id)))
            .unwrap_or_else(|| "everyone".into());
        // The label before the choice, as chat apps put it: "To: everyone ▾".
        let to = ui.label("To:");
        egui::ComboBox::from_id_salt("chat-to")
            .selected_text(to_label)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut st.chat_to, None, "everyone");
                for p in &st.peers {
                    ui.selectable_value(&mut st.chat_to, Some(p.id), &p.name);
                }
            })
            .response
            .labelled_by(to.id);
        let l = ui.label("Message");
        let input = ui
            .add(
                egui::TextEdit::singleline(&mut st.chat_input)
                    .hint_text("type and press Enter")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(l.id);
        let enter = input.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if enter && st.is_connected() && !st.chat_input.trim().is_empty() {
            let text = std::mem::take(&mut st.chat_input);
            let signal = match st.chat_to {
                Some(id) => Signal::to_one(id, CHAT_TYPE, text),
                None => Signal::to_all(CHAT_TYPE, text),
            };
            command = Some(st.send(signal));
            input.request_focus();
        }
    });
    command
}
