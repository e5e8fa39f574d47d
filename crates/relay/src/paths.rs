//! Where Signalbox keeps its files.
//!
//! By default the platform's directories for `signalbox` (`directories::ProjectDirs`); when
//! `SIGNALBOX_HOME` is set, everything lives under it instead (`$SIGNALBOX_HOME/data`,
//! `$SIGNALBOX_HOME/config`) — tests always set it, so no test touches the real home.

use std::path::PathBuf;

/// The environment variable that overrides every path.
pub const HOME_ENV: &str = "SIGNALBOX_HOME";

/// No home directory could be found and `SIGNALBOX_HOME` is not set.
#[derive(Debug, thiserror::Error)]
#[error("no home directory found; set {HOME_ENV} to a directory for Signalbox's files")]
pub struct NoHome;

fn project() -> Result<directories::ProjectDirs, NoHome> {
    directories::ProjectDirs::from("", "", "signalbox").ok_or(NoHome)
}

fn under_home(sub: &str) -> Option<PathBuf> {
    std::env::var_os(HOME_ENV)
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(sub))
}

/// The relay's data directory: identity, token secret, credentials.
pub fn data_dir() -> Result<PathBuf, NoHome> {
    match under_home("data") {
        Some(p) => Ok(p),
        None => Ok(project()?.data_dir().to_path_buf()),
    }
}

/// The configuration directory: the desktop app's settings.
pub fn config_dir() -> Result<PathBuf, NoHome> {
    match under_home("config") {
        Some(p) => Ok(p),
        None => Ok(project()?.config_dir().to_path_buf()),
    }
}
