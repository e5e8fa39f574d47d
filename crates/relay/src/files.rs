//! Reading and writing the relay's small files, with errors that name the file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_owned(),
        source,
    }
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(err(path))
}

fn create_parent(path: &Path) -> Result<(), FileError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err(parent))?;
    }
    Ok(())
}

/// Writes a file only its owner may read (keys and secrets), creating its directory. The
/// write is atomic: a temporary file (mode 0600) in the same directory is written, synced and
/// renamed over `path`, so a failure never leaves a partial or empty secret behind.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    create_parent(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // tempfile creates the file with mode 0600 and a random name, exclusively.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(err(path))?;
    file.write_all(bytes).map_err(err(path))?;
    file.as_file().sync_all().map_err(err(path))?;
    file.persist(path).map_err(|e| FileError {
        path: path.to_owned(),
        source: e.error,
    })?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes an ordinary file, creating its directory.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    create_parent(path)?;
    std::fs::write(path, bytes).map_err(err(path))
}
