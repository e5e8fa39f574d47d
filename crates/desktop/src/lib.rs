//! # signalbox-desktop — the Signalbox desktop app
//!
//! An egui app for people: join a session by pasting an invite, see who is there, watch every
//! signal in a log that stays smooth at 100 000 rows, chat with read receipts, send any signal
//! to everyone, one person or several, drive machines from a control pad bound to keys, and
//! host a relay on this machine with one click. Relays announcing themselves on the LAN show
//! up in the join screen, marked by trust on first use (a name whose fingerprint changed is
//! never joined without the user confirming).
//!
//! The shape follows egui's own advice for async work. [`state::AppState`] is plain data,
//! changed only by backend [`backend::Event`]s ([`state::AppState::apply`]) and by the user's
//! actions in the views. Each view is a function over the state that returns the
//! [`backend::Command`] the user asked for. A backend thread owns the tokio runtime, the
//! [`signalbox_client::Client`] and the hosted [`signalbox_relay::RelayHandle`]; commands go
//! to it over a channel and events come back, each followed by `request_repaint`. Drawing
//! never waits on the network.
//!
//! ```no_run
//! // `signalbox` with no arguments does this.
//! signalbox_desktop::run(signalbox_desktop::Options::default())?;
//! # Ok::<(), eframe::Error>(())
//! ```

pub mod app;
pub mod backend;
pub mod background;
pub mod demo;
pub mod log;
pub mod settings;
pub mod state;
pub mod views;

pub use app::SignalboxApp;

/// How to start the app.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Host a demo relay with scripted participants and join it.
    pub demo: bool,
    /// Where the join screen looks for relays announcing themselves.
    pub discovery: signalbox_client::discovery::BrowseOptions,
}

/// Opens the window and runs until it is closed. Settings persist in the config directory
/// (`SIGNALBOX_HOME` aware).
pub fn run(options: Options) -> eframe::Result {
    let persistence_path = signalbox_relay::paths::config_dir()
        .ok()
        .map(|d| d.join("app.ron"));
    if let Some(path) = &persistence_path {
        keep_private(path);
    }
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Signalbox")
            .with_app_id("signalbox")
            .with_inner_size([1180.0, 720.0])
            .with_min_inner_size([720.0, 420.0])
            .with_icon(icon()),
        persistence_path,
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "Signalbox",
        native,
        Box::new(move |cc| {
            let mut app = SignalboxApp::from_storage(cc.storage);
            app.command(backend::Command::Discover(options.discovery.clone()));
            // A relay this machine hosts in the background (from an earlier window, a user
            // unit, or login) is shown in the Host panel.
            app.command(backend::Command::FindBackground {
                data_dir: None,
                session: app.state.settings.host_session.clone(),
            });
            if options.demo {
                match demo::Demo::start() {
                    Ok(demo) => {
                        app.state.tab = state::Tab::Log;
                        let mut o = signalbox_client::ConnectOptions::from_invite(&demo.invite);
                        o.name = Some("operator".into());
                        app.command(backend::Command::Connect(o));
                    }
                    Err(e) => app.state.notice = Some(format!("demo failed: {e}")),
                }
            }
            Ok(Box::new(app))
        }),
    )
}

/// The settings hold recent invites, which may carry moderator tokens: their directory is
/// the owner's only (0700) and the file 0600.
pub fn keep_private(settings_file: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = settings_file.parent() {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        // A file eframe makes later is inside the private directory.
        if settings_file.exists() {
            let _ = std::fs::set_permissions(settings_file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// The window icon: a signal mast drawn in code (also written to `assets/icon.png`).
pub fn icon() -> egui::IconData {
    icon_sized(64)
}

/// The icon drawn at `size` × `size` pixels (the sizes desktops look for are in
/// `assets/icons/`; `assets/signalbox.svg` is the same drawing as vectors).
pub fn icon_sized(size: usize) -> egui::IconData {
    let mut rgba = vec![0u8; size * size * 4];
    // The drawing is on a 64-unit grid.
    let unit = size as f32 / 64.0;
    let center = (size as f32 - 1.0) / 2.0;
    for y in 0..size {
        for x in 0..size {
            let dx = (x as f32 - center) / unit;
            let dy = (y as f32 - center) / unit;
            let r = (dx * dx + dy * dy).sqrt();
            let i = (y * size + x) * 4;
            // A rounded square background.
            let inside = dx.abs() < 30.0
                && dy.abs() < 30.0
                && (dx.abs() < 22.0
                    || dy.abs() < 22.0
                    || ((dx.abs() - 22.0).powi(2) + (dy.abs() - 22.0).powi(2)).sqrt() < 8.0);
            if !inside {
                continue;
            }
            let (mut red, mut green, mut blue) = (28u8, 36u8, 52u8);
            // Three arcs (waves) above a dot: a signal.
            let up = dy < 4.0 && dx.abs() < -dy + 6.0;
            let ring = [9.0f32, 16.0, 23.0]
                .iter()
                .any(|&rad| (r - rad).abs() < 2.2);
            if (ring && up) || r < 4.5 {
                (red, green, blue) = (90, 200, 255);
            }
            rgba[i..i + 4].copy_from_slice(&[red, green, blue, 255]);
        }
    }
    egui::IconData {
        rgba,
        width: size as u32,
        height: size as u32,
    }
}

#[cfg(test)]
mod tests {
    use eframe::icon_data::IconDataExt;

    /// `assets/icon.png` is the icon drawn by [`super::icon`]. To redraw it:
    /// `SIGNALBOX_WRITE_ICON=1 cargo test -p signalbox-desktop icon_asset`.
    #[test]
    fn icon_asset_matches_the_drawn_icon() {
        let png = super::icon().to_png_bytes().unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/icon.png");
        if std::env::var_os("SIGNALBOX_WRITE_ICON").is_some() {
            std::fs::write(path, &png).unwrap();
        }
        let on_disk = eframe::icon_data::from_png_bytes(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(on_disk, super::icon(), "assets/icon.png is out of date");
    }

    #[test]
    fn the_settings_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("config").join("app.ron");
        super::keep_private(&file);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        std::fs::write(&file, b"()").unwrap();
        // An existing, world-readable one is made private too.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::keep_private(&file);
        assert_eq!(mode(&file), 0o600);
    }

    /// The icon at the sizes desktop environments look for (hicolor 48, 128, 256), as the
    /// package installs them. Redrawn like `icon.png`.
    #[test]
    fn icon_sizes_match_the_drawn_icon() {
        for size in [48usize, 128, 256] {
            let drawn = super::icon_sized(size);
            let path = format!(
                "{}/../../assets/icons/{size}x{size}/signalbox.png",
                env!("CARGO_MANIFEST_DIR")
            );
            if std::env::var_os("SIGNALBOX_WRITE_ICON").is_some() {
                std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
                std::fs::write(&path, drawn.to_png_bytes().unwrap()).unwrap();
            }
            let on_disk =
                eframe::icon_data::from_png_bytes(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!((on_disk.width, on_disk.height), (size as u32, size as u32));
            assert_eq!(on_disk, drawn, "{path} is out of date");
        }
    }
}
