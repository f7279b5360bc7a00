//! Verifying the key index before it is trusted. LMDB trusts its pages: a damaged one (a disk
//! error, a stray write) can make a read fail or crash the process that follows it, and nothing
//! shows at open. So at start the whole index is walked in a child process (the server's own
//! binary, `dataforge verify-key-index DIR`): a walk that fails or crashes has the index set aside
//! and rebuilt from the tables, and the server never reads a damaged page.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heed::types::{Bytes, DecodeIgnore, Str};

/// Walks every entry of every database of the key index in `dir`, read-only, and answers how many
/// there are. Meant for a child process: see the module's comment.
pub fn walk_key_index(dir: &Path) -> Result<u64, String> {
    let data = dir.join("data.mdb");
    let size = std::fs::metadata(&data)
        .map_err(|e| format!("cannot read {}: {e}", data.display()))?
        .len();
    let mut options = heed::EnvOpenOptions::new();
    // the map must cover the file; the named databases are few
    options
        .map_size((size as usize).max(1 << 20).next_multiple_of(1 << 20))
        .max_dbs(4096);
    // SAFETY: no other process has the index open (the server verifies before it opens it), so
    // the lock file is not needed, and nothing is written
    unsafe {
        options.flags(heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_LOCK);
    }
    // SAFETY: as above
    let env = unsafe { options.open(dir) }.map_err(|e| e.to_string())?;
    let tx = env.read_txn().map_err(|e| e.to_string())?;
    let main = env
        .open_database::<Str, DecodeIgnore>(&tx, None)
        .map_err(|e| e.to_string())?
        .ok_or("the index has no main database")?;
    let mut names = Vec::new();
    for entry in main.iter(&tx).map_err(|e| e.to_string())? {
        names.push(entry.map_err(|e| e.to_string())?.0.to_owned());
    }
    let mut entries = 0;
    for name in &names {
        let db = env
            .open_database::<Bytes, Bytes>(&tx, Some(name))
            .map_err(|e| format!("{name}: {e}"))?
            .ok_or_else(|| format!("{name}: listed but absent"))?;
        for entry in db.iter(&tx).map_err(|e| format!("{name}: {e}"))? {
            entry.map_err(|e| format!("{name}: {e}"))?;
            entries += 1;
        }
    }
    Ok(entries)
}

/// How long the walk may take: a damaged page can send it round a cycle for ever.
const WALK_DEADLINE: Duration = Duration::from_secs(600);

/// Has `verifier` (this program) walk the key index in `dir` in a child process; `Err` says why
/// the index is not to be trusted.
pub(crate) fn verified_in_child(verifier: &Path, dir: &Path) -> Result<(), String> {
    let mut child = Command::new(verifier)
        .arg("verify-key-index")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", verifier.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > WALK_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("its walk took longer than {WALK_DEADLINE:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for its walk: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    Err(match status.code() {
        Some(_) => format!("its walk failed: {}", said.trim()),
        None => format!("its walk crashed ({status})"),
    })
}
