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
    /// "to" between a sender and its recipients (the fonts have no "→").
    pub const TO: &str = "➡";
    /// Every symbol above and in the default control pad.
    pub const ALL: &[&str] = &[
        ACCEPTED, FAILED, PENDING, NEWLINE, DISMISS, LIGHT, DARK, TO, "⬆", "⬅", "⏹", "➡", "⬇", "—",
        "·",
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

    /// Every character outside ASCII that the app's own code prints — inside string and
    /// char literals of `src/` (comments left out) — has a glyph, so nobody sees a box.
    #[test]
    fn every_character_the_ui_prints_has_a_glyph() {
        let ctx = egui::Context::default();
        let mut out = ctx.run_ui(Default::default(), |_| {});
        out.textures_delta.clear();
        let font = egui::FontId::proportional(14.0);
        let mono = egui::FontId::monospace(14.0);
        let mut checked = std::collections::BTreeSet::new();
        let mut missing = Vec::new();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                // The characters between quotes (a string's or a char's).
                let mut inside = None;
                let mut escaped = false;
                for c in line.chars() {
                    match inside {
                        None if c == '"' || c == '\'' => inside = Some(c),
                        None => {}
                        Some(q) if !escaped && c == q => inside = None,
                        Some(_) => {
                            escaped = !escaped && c == '\\';
                            if !c.is_ascii() && checked.insert(c) {
                                let ok = ctx
                                    .fonts_mut(|f| f.has_glyph(&font, c) && f.has_glyph(&mono, c));
                                if !ok {
                                    missing.push(format!("{c:?} in {}", path.display()));
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked.contains(&'✔'), "the scan finds the UI's symbols");
        assert!(missing.is_empty(), "no glyph for {missing:?}");
    }

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
