//! A damaged index is set aside and rebuilt from the store rather than trusted or refused: LMDB
//! follows a damaged page without noticing, and the index holds nothing the store does not.

use std::path::Path;

use dataforge_domain::ports::StoreError;

use super::KeyIndex;
use crate::error::{damaged, index_error};
use crate::{unsynced, verify};

/// Left in the index's directory when a read found it damaged: the next start rebuilds it.
const FOUND_DAMAGED: &str = "found-damaged";

/// Moves a damaged index aside (kept for inspection: it may hold writes acknowledged in the last
/// moments before the damage that the tables do not have yet) so that a new one is built from the
/// tables, instead of refusing to start.
fn set_aside(path: &Path, e: &dyn std::fmt::Display) -> Result<(), StoreError> {
    // nanoseconds: two damaged indexes set aside within a second keep apart
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".damaged-{now}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .and_then(|()| std::fs::create_dir_all(path))
        .map_err(|io| {
            StoreError::Internal(format!(
                "the key index at {} is damaged ({e}) and could not be set aside: {io}",
                path.display()
            ))
        })?;
    tracing::error!(
        index = %path.display(),
        set_aside = %aside.display(),
        error = %e,
        "the key index is damaged; it was set aside and is rebuilt from the tables"
    );
    Ok(())
}

impl KeyIndex {
    /// Called when a read of the index failed, which only a damaged index does: it is no longer
    /// used (reads and key checks go through the store) and the next start sets it aside and
    /// rebuilds it.
    pub fn found_damaged(&self, e: &StoreError) {
        tracing::error!(error = %e, index = %self.path.display(), "a read of the key index failed; it is no longer used (reads and key checks go through the store) and the next start rebuilds it");
        self.disable();
        if let Err(io) = std::fs::write(self.path.join(FOUND_DAMAGED), e.to_string()) {
            tracing::error!(error = %io, "could not mark the key index for a rebuild; delete its directory before the next start");
        }
    }
}

/// Sets the index at `path` aside before it is opened when it is not to be trusted: the machine
/// stopped while it held writes not yet on disk, a read found it damaged, or its walk by `verifier`
/// (see [`verify`]) failed.
pub(super) fn set_aside_if_untrusted(
    path: &Path,
    verifier: Option<&Path>,
) -> Result<(), StoreError> {
    if unsynced::from_earlier_boot(path) {
        let why = "the machine stopped while it held writes not yet on disk";
        set_aside(path, &why)?;
    } else if path.join(FOUND_DAMAGED).exists() {
        set_aside(path, &"a read found it damaged")?;
    } else if let Some(verifier) = verifier
        && path.join("data.mdb").exists()
        && let Err(why) = verify::verified_in_child(verifier, path)
    {
        set_aside(path, &why)?;
    }
    Ok(())
}

/// Opens the environment at `path`; one LMDB finds damaged is set aside and a new one opened.
pub(super) fn open_env(
    path: &Path,
    options: &heed::EnvOpenOptions,
) -> Result<heed::Env, StoreError> {
    // SAFETY: see `env_options`: the environment is opened once per process, by this index only
    match unsafe { options.open(path) } {
        Ok(env) => Ok(env),
        Err(e) if damaged(&e) => {
            set_aside(path, &e)?;
            // SAFETY: as above
            unsafe { options.open(path) }.map_err(index_error)
        }
        Err(e) => Err(index_error(e)),
    }
}
