//! The signal log: filters and a virtualised table (only visible rows are drawn).

use egui_extras::{Column, TableBuilder};

use super::symbols;
use crate::log::{Delivery, Direction, Filter, Row};
use crate::state::AppState;

const ROW_HEIGHT: f32 = 18.0;

/// The log with its filters.
pub fn log_view(ui: &mut egui::Ui, st: &mut AppState) {
    let mut filter: Filter = st.log.filter().clone();
    ui.horizontal(|ui| {
        for (label, value, width, hint) in [
            ("Filter type", &mut filter.r#type, 90.0, "any type"),
            ("Filter sender", &mut filter.sender, 90.0, "anyone"),
            ("Filter text", &mut filter.text, 140.0, "text in the data"),
        ] {
            let l = ui.label(label.trim_start_matches("Filter "));
            // Framed, with a placeholder: visible in the light theme as in the dark one.
            ui.add(
                egui::TextEdit::singleline(value)
                    .desired_width(width)
                    .hint_text(hint)
                    .background_color(ui.visuals().text_edit_bg_color()),
            )
            .labelled_by(l.id)
            .on_hover_text(label);
        }
        ui.checkbox(&mut st.auto_scroll, "Auto-scroll");
        if ui.button("Clear").clicked() {
            st.log.clear();
        }
        if ui
            .button("Export")
            .on_hover_text(
                "Save the rows shown as JSON lines (as `signalbox listen --json` prints)",
            )
            .clicked()
        {
            match export(st) {
                Ok(path) => st.notify(format!("Saved {}", path.display())),
                Err(e) => st.warn(format!("Cannot export the log: {e}")),
            }
        }
        ui.weak(format!("{}/{} rows", st.log.shown_len(), st.log.len()));
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
    let selected = st.selected_row;
    let mut clicked = None;
    // The Data column is the one that matters: the others start narrow (and are resizable),
    // Data keeps at least DATA_MIN, and a window too narrow for them all scrolls sideways.
    // What is visible: a panel beside this one may overlap the area egui gives it.
    let available = ui
        .available_width()
        .min(ui.clip_rect().right() - ui.cursor().left());
    egui::ScrollArea::horizontal()
        .id_salt("log-sideways")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let width = available.max(TIME_WIDTH + 3.0 * 40.0 + DATA_MIN);
            ui.set_min_width(width);
            // Narrow (a side panel open): From, To and Type start narrow enough that Data
            // keeps most of the room. Each mode remembers its own resized widths.
            let narrow = available < TIME_WIDTH + 3.0 * 88.0 + 2.0 * DATA_MIN;
            let side = if narrow {
                ((available - TIME_WIDTH - 1.5 * DATA_MIN) / 3.0).clamp(40.0, 88.0)
            } else {
                88.0
            };
            // A click anywhere on a row opens it (cell text is not selectable here; the
            // details are).
            ui.style_mut().interaction.selectable_labels = false;
            TableBuilder::new(ui)
                .id_salt(if narrow { "log-narrow" } else { "log-wide" })
                .striped(true)
                .sense(egui::Sense::click())
                .stick_to_bottom(st.auto_scroll)
                .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                .column(Column::exact(TIME_WIDTH))
                .column(
                    Column::initial(side)
                        .at_least(40.0)
                        .clip(true)
                        .resizable(true),
                )
                .column(
                    Column::initial(side)
                        .at_least(40.0)
                        .clip(true)
                        .resizable(true),
                )
                .column(
                    Column::initial(side)
                        .at_least(40.0)
                        .clip(true)
                        .resizable(true),
                )
                .column(Column::remainder().at_least(DATA_MIN).clip(true))
                .auto_shrink([false, false])
                .header(ROW_HEIGHT + 2.0, |mut h| {
                    for title in ["Local time", "From", "To", "Type", "Data"] {
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
                        row.set_selected(selected == Some(r.number));
                        draw_row(&mut row, r, weak, error);
                        if row.response().clicked() {
                            clicked = Some(r.number);
                        }
                    });
                });
        });
    if let Some(number) = clicked {
        st.selected_row = (selected != Some(number)).then_some(number);
    }
    details(ui.ctx(), st);
}

/// The Time column's width: `HH:MM:SS` (the milliseconds are in the tooltip).
const TIME_WIDTH: f32 = 68.0;
/// The least width of the Data column.
const DATA_MIN: f32 = 160.0;

/// One row's cells.
fn draw_row(
    row: &mut egui_extras::TableRow<'_, '_>,
    r: &Row,
    weak: egui::Color32,
    error: egui::Color32,
) {
    row.col(|ui| {
        ui.monospace(r.time.get(..8).unwrap_or(&r.time))
            .on_hover_text(&r.time);
    });
    row.col(|ui| {
        match r.direction {
            Direction::Out { .. } => ui.strong(&r.sender).on_hover_text("sent by you"),
            Direction::In { .. } => ui.label(&r.sender),
            Direction::Presence { .. } => ui.colored_label(weak, &r.sender),
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
        if matches!(r.direction, Direction::Presence { .. }) {
            ui.label(egui::RichText::new(&r.data).italics().color(weak));
        } else if r.data.is_empty() && r.r#type.is_empty() {
            ui.colored_label(weak, "ping");
        } else {
            // The first line's worth: the whole data is in the details.
            let shown: String = r.data.chars().take(400).collect();
            ui.label(shown.replace('\n', &format!(" {} ", symbols::NEWLINE)));
        }
    });
}

/// The data as people read it: JSON pretty-printed, anything else as it is.
pub(crate) fn readable(data: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(v) if v.is_object() || v.is_array() => {
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| data.to_owned())
        }
        _ => data.to_owned(),
    }
}

/// The selected row's whole signal, with Copy.
fn details(ctx: &egui::Context, st: &mut AppState) {
    let Some(number) = st.selected_row else {
        return;
    };
    let Some(r) = st.log.get(number).cloned() else {
        st.selected_row = None;
        return;
    };
    let mut open = true;
    egui::Window::new("Signal details")
        .open(&mut open)
        .default_size([460.0, 320.0])
        .resizable(true)
        .collapsible(false)
        .show(ctx, |ui| {
            egui::Grid::new("signal-details")
                .num_columns(2)
                .show(ui, |ui| {
                    for (k, v) in [
                        ("Time", r.time.as_str()),
                        ("From", r.sender.as_str()),
                        ("To", r.target.as_str()),
                        ("Type", r.r#type.as_str()),
                    ] {
                        ui.weak(k);
                        ui.label(v);
                        ui.end_row();
                    }
                    ui.weak("Size");
                    ui.label(format!("{} bytes", r.data.len()));
                    ui.end_row();
                });
            let text = readable(&r.data);
            ui.horizontal(|ui| {
                if ui.button("Copy data").clicked() {
                    ui.ctx().copy_text(r.data.clone());
                    st.notify("Data copied.");
                }
            });
            egui::ScrollArea::both()
                .id_salt("details-data")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.add(
                        egui::Label::new(egui::RichText::new(text).monospace()).selectable(true),
                    );
                });
        });
    if !open {
        st.selected_row = None;
    }
}

/// Writes the rows shown to `signals-<date>-<time>.jsonl` in the Downloads folder (the
/// exports directory under `SIGNALBOX_HOME` when that is set); returns the path.
pub(crate) fn export(st: &AppState) -> std::io::Result<std::path::PathBuf> {
    let dir = match std::env::var_os("SIGNALBOX_HOME") {
        Some(home) => std::path::PathBuf::from(home).join("exports"),
        None => directories::UserDirs::new()
            .and_then(|u| u.download_dir().map(std::path::Path::to_path_buf))
            .or_else(|| directories::UserDirs::new().map(|u| u.home_dir().to_path_buf()))
            .ok_or_else(|| std::io::Error::other("no home directory"))?,
    };
    std::fs::create_dir_all(&dir)?;
    let stamp = jiff::ZonedDateTime::now()
        .strftime("%Y-%m-%d-%H%M%S")
        .to_string();
    let path = dir.join(format!("signals-{stamp}.jsonl"));
    std::fs::write(&path, st.log.to_json_lines())?;
    Ok(path)
}
