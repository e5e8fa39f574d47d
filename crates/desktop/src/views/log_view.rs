//! The signal log: filters and a virtualised table (only visible rows are drawn).

use egui_extras::{Column, TableBuilder};

use super::symbols;
use crate::log::{Delivery, Direction, Filter};
use crate::state::AppState;

const ROW_HEIGHT: f32 = 18.0;

/// The log with its filters.
pub fn log_view(ui: &mut egui::Ui, st: &mut AppState) {
    let mut filter: Filter = st.log.filter().clone();
    ui.horizontal(|ui| {
        for (label, value, width) in [
            ("Filter type", &mut filter.r#type, 90.0),
            ("Filter sender", &mut filter.sender, 90.0),
            ("Filter text", &mut filter.text, 140.0),
        ] {
            let l = ui.label(label.trim_start_matches("Filter "));
            ui.add(egui::TextEdit::singleline(value).desired_width(width))
                .labelled_by(l.id)
                .on_hover_text(label);
        }
        ui.checkbox(&mut st.auto_scroll, "Auto-scroll");
        if ui.button("Clear").clicked() {
            st.log.clear();
        }
        ui.weak(format!(
            "{} of {} signals",
            st.log.shown_len(),
            st.log.len()
        ));
    });
    st.log.set_filter(filter);
    ui.separator();
    if st.log.shown_len() == 0 {
        ui.weak(if st.log.is_empty() {
            "No signals yet. Send one below, or wait for others."
        } else {
            "No signal matches the filter."
        });
        return;
    }
    let error = ui.visuals().error_fg_color;
    let weak = ui.visuals().weak_text_color();
    TableBuilder::new(ui)
        .striped(true)
        .stick_to_bottom(st.auto_scroll)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::exact(104.0))
        .column(
            Column::initial(110.0)
                .at_least(60.0)
                .clip(true)
                .resizable(true),
        )
        .column(
            Column::initial(110.0)
                .at_least(60.0)
                .clip(true)
                .resizable(true),
        )
        .column(
            Column::initial(116.0)
                .at_least(40.0)
                .clip(true)
                .resizable(true),
        )
        .column(Column::remainder().clip(true))
        .auto_shrink([false, false])
        .header(ROW_HEIGHT + 2.0, |mut h| {
            for title in ["Time (UTC)", "From", "To", "Type", "Data"] {
                h.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(ROW_HEIGHT, st.log.shown_len(), |mut row| {
                let Some(r) = st.log.shown(row.index()) else {
                    return;
                };
                row.col(|ui| {
                    ui.monospace(&r.time);
                });
                row.col(|ui| {
                    match r.direction {
                        Direction::Out { .. } => ui.strong(&r.sender).on_hover_text("sent by you"),
                        Direction::In { .. } => ui.label(&r.sender),
                    };
                });
                row.col(|ui| {
                    ui.label(&r.target);
                });
                row.col(|ui| {
                    if r.r#type.is_empty() {
                        ui.colored_label(weak, "—");
                    } else {
                        ui.monospace(&r.r#type);
                    }
                });
                row.col(|ui| {
                    match &r.delivery {
                        Some(Delivery::Pending) => {
                            ui.colored_label(weak, symbols::PENDING)
                                .on_hover_text("waiting for the relay");
                        }
                        Some(Delivery::Accepted) => {
                            ui.label(symbols::ACCEPTED)
                                .on_hover_text("accepted by the relay");
                        }
                        Some(Delivery::Failed { code, message }) => {
                            ui.colored_label(
                                error,
                                format!("{} error {code}: {message} —", symbols::FAILED),
                            );
                        }
                        None => {}
                    }
                    if r.data.is_empty() && r.r#type.is_empty() {
                        ui.colored_label(weak, "ping");
                    } else {
                        ui.label(r.data.replace('\n', &format!(" {} ", symbols::NEWLINE)));
                    }
                });
            });
        });
}
