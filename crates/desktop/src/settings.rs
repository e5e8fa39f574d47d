//! What the app remembers between runs (eframe storage, in the config directory).

use serde::{Deserialize, Serialize};

/// The most recent relays kept.
const MAX_RECENT: usize = 8;

/// Who a control-pad button sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PadTarget {
    /// Everyone in the session.
    #[default]
    Everyone,
    /// The participant with this display name (looked up when the button is pressed).
    Named(String),
}

/// A control-pad button: a fixed signal, optionally bound to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadButton {
    /// What the button says.
    pub label: String,
    /// Who it sends to.
    pub target: PadTarget,
    /// The signal's type.
    pub r#type: String,
    /// The signal's data.
    pub data: String,
    /// A key that presses it (egui key name, e.g. `ArrowUp`), when no text field has focus.
    pub key: Option<String>,
}

impl PadButton {
    fn robot(label: &str, data: &str, key: &str) -> Self {
        Self {
            label: label.into(),
            target: PadTarget::Everyone,
            r#type: "robot".into(),
            data: data.into(),
            key: Some(key.into()),
        }
    }

    /// The key this button is bound to, if it names a real key.
    pub fn egui_key(&self) -> Option<egui::Key> {
        self.key.as_deref().and_then(egui::Key::from_name)
    }
}

/// A relay joined before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRelay {
    /// The invite used (it carries address, session, fingerprint and token).
    pub invite: String,
    /// A short label: session @ address.
    pub label: String,
}

/// Light or dark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Theme {
    /// Dark (the default).
    #[default]
    Dark,
    /// Light.
    Light,
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The display name to join with.
    pub name: String,
    /// Relays joined before, newest first.
    pub recent: Vec<RecentRelay>,
    /// The control pad.
    pub pad: Vec<PadButton>,
    /// Light or dark.
    pub theme: Theme,
    /// The port of a hosted relay.
    pub host_port: u16,
    /// Whether a hosted relay accepts joins without a token.
    pub host_open: bool,
    /// The session a hosted relay invites to.
    pub host_session: String,
    /// Whether a hosted relay announces itself on the LAN.
    pub host_announce: bool,
    /// Host in a process of its own that keeps running after the window closes.
    #[serde(default)]
    pub host_background: bool,
    /// Start that background relay at login (an XDG autostart entry).
    #[serde(default)]
    pub host_autostart: bool,
    /// Relay names and the certificate fingerprints first seen for them (trust on first use).
    pub known_relays: signalbox_proto::discovery::KnownRelays,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: String::new(),
            recent: Vec::new(),
            pad: vec![
                PadButton::robot("⬆ Forward", "forward", "ArrowUp"),
                PadButton::robot("⬅ Left", "left", "ArrowLeft"),
                PadButton::robot("⏹ Stop", "stop", "Space"),
                PadButton::robot("➡ Right", "right", "ArrowRight"),
                PadButton::robot("⬇ Back", "back", "ArrowDown"),
            ],
            theme: Theme::Dark,
            host_port: signalbox_proto::invite::DEFAULT_PORT,
            // Token mode: people join with the invite the host hands out.
            host_open: false,
            host_session: "lobby".into(),
            host_announce: true,
            host_background: false,
            host_autostart: false,
            known_relays: Default::default(),
        }
    }
}

impl Settings {
    /// Remembers a relay joined with `invite`, newest first, without duplicates.
    pub fn remember(&mut self, invite: &str, label: String) {
        self.recent.retain(|r| r.invite != invite);
        self.recent.insert(
            0,
            RecentRelay {
                invite: invite.to_owned(),
                label,
            },
        );
        self.recent.truncate(MAX_RECENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_relays_are_newest_first_and_bounded() {
        let mut s = Settings::default();
        for i in 0..10 {
            s.remember(&format!("signalbox://h/{i}"), format!("{i}"));
        }
        s.remember("signalbox://h/5", "5 again".into());
        assert_eq!(s.recent.len(), MAX_RECENT);
        assert_eq!(s.recent[0].label, "5 again");
        assert_eq!(
            s.recent.iter().filter(|r| r.invite.ends_with("/5")).count(),
            1
        );
    }

    #[test]
    fn default_pad_keys_are_real_keys_and_settings_round_trip() {
        let s = Settings::default();
        assert!(s.pad.iter().all(|b| b.egui_key().is_some()));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), s);
        // Old or partial settings load with defaults for what is missing.
        let partial: Settings = serde_json::from_str(r#"{"name":"ann"}"#).unwrap();
        assert_eq!(partial.name, "ann");
        assert_eq!(partial.pad, s.pad);
    }
}
