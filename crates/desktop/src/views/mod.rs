//! Drawing: each view is a function over the state that returns what the user asked for.

mod chat;
mod composer;
mod host;
mod join;
mod log_view;
mod pad;
mod people;
mod status;

pub use chat::chat_view;
pub use composer::composer;
pub use host::host_panel;
pub use join::join_screen;
pub use log_view::log_view;
pub use pad::{control_pad, pad_key_command};
pub use people::participants;
pub use status::{status_bar, top_bar};

/// Symbols the views draw. Each must have a glyph in egui's bundled fonts (a test checks),
/// or people see boxes.
pub mod symbols {
    /// Accepted by the relay.
    pub const ACCEPTED: &str = "✔";
    /// Refused.
    pub const FAILED: &str = "✖";
    /// Waiting for the relay.
    pub const PENDING: &str = "…";
    /// A line break inside data shown on one line.
    pub const NEWLINE: &str = "↩";
    /// Dismiss a notice.
    pub const DISMISS: &str = "🗙";
    /// Switch to the light theme.
    pub const LIGHT: &str = "☀";
    /// Switch to the dark theme.
    pub const DARK: &str = "🌙";
    /// Every symbol above and in the default control pad.
    pub const ALL: &[&str] = &[
        ACCEPTED, FAILED, PENDING, NEWLINE, DISMISS, LIGHT, DARK, "⬆", "⬅", "⏹", "➡", "⬇", "—", "·",
    ];
}

/// A single-line text field tied to its label (so tests and screen readers find it by name).
fn labelled_field(ui: &mut egui::Ui, label: &str, text: &mut String, hint: &str) -> egui::Response {
    ui.horizontal(|ui| {
        let l = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(text)
                .hint_text(hint)
                .desired_width(f32::INFINITY),
        )
        .labelled_by(l.id)
    })
    .inner
}

/// Red text for errors.
fn error_text(ui: &mut egui::Ui, text: &str) {
    ui.colored_label(ui.visuals().error_fg_color, text);
}

#[cfg(test)]
mod tests {
    use super::symbols;

    #[test]
    fn every_symbol_has_a_glyph_in_the_bundled_fonts() {
        let ctx = egui::Context::default();
        let mut out = ctx.run_ui(Default::default(), |_| {});
        out.textures_delta.clear();
        let font = egui::FontId::proportional(14.0);
        let pad: Vec<String> = crate::settings::Settings::default()
            .pad
            .into_iter()
            .map(|b| b.label)
            .collect();
        for text in symbols::ALL
            .iter()
            .copied()
            .chain(pad.iter().map(String::as_str))
        {
            for c in text.chars().filter(|c| !c.is_ascii()) {
                assert!(
                    ctx.fonts_mut(|f| f.has_glyph(&font, c)),
                    "no glyph for {c:?} in {text:?}"
                );
            }
        }
    }
}
