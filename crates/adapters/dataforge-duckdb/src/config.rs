//! Every DuckDB setting in one place, applied once when the database opens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The embedded database's settings. Defaults suit a small machine (2 cores, a few GiB). They sit
/// in `[database]` beside other engines' settings, so names nobody knows are refused by the
/// program that reads the section, not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DuckDbConfig {
    /// Database file; its directory is created if missing.
    pub path: PathBuf,
    /// Memory DuckDB may use before spilling to `temp_directory` (e.g. `1GiB`, `512MB`). Its
    /// buffer pool keeps the table blocks scans read up to this limit: it is both what an export of
    /// any size holds and how much of a table repeated scans find cached. 256MiB keeps a
    /// 10-million-row export under 430 MiB RSS and that table's aggregate columns cached
    /// (docs/read-path.md).
    pub memory_limit: String,
    /// Worker threads per query; 0 means one per CPU core.
    pub threads: u32,
    /// Where queries spill; empty means `<path>.tmp` beside the database file.
    pub temp_directory: Option<PathBuf>,
    /// Keep insertion order in unordered results. Every API read is ordered, so off saves memory.
    pub preserve_insertion_order: bool,
    /// WAL size that triggers a checkpoint into the database file (e.g. `64MiB`).
    pub checkpoint_threshold: String,
    /// Connections kept for reads, so reads run in parallel with each other and the writer.
    pub read_connections: u32,
    /// Requests that may wait for the writer before new ones are refused with 503.
    pub write_queue: u32,
    /// Milliseconds a write waits for room in a full queue before it is answered 503.
    pub write_wait_ms: u64,
    /// MiB of incoming records the writer keeps in memory, over all writes in progress; a write
    /// within its share (a quarter, at most 64 MiB) is appended straight to its table at commit,
    /// a larger one is staged in a temporary table that spills to disk. 0 stages every write.
    pub write_buffer_mib: u32,
    /// Milliseconds, at most, that groups of small writes (up to 8,192 records in all) wait before
    /// they are appended to their tables: such groups are acknowledged once their records are
    /// durable in the journal (`<path>.journal`) and readable by key, and appended to DuckDB many groups at a time (reads wait for
    /// them, so a read after a `201` sees the write). 0 appends every group before acknowledging it.
    pub deferred_append_ms: u64,
    /// MiB the primary-key index may grow to. LMDB reserves this much address space up front (disk
    /// grows only with use); when the index is full, writes go on with keys checked by SQL, and
    /// the server does not start again until this is raised (the log says so).
    pub key_index_max_mib: u64,
    /// Milliseconds a read may take to start answering before it is stopped and answered 504.
    pub query_timeout_ms: u64,
    /// The program that walks the key index in a child process before it is opened (the
    /// server's own binary, with `verify-key-index DIR`); none skips the check. Set by the
    /// program, not a setting.
    #[serde(skip)]
    pub key_index_verifier: Option<PathBuf>,
}

impl Default for DuckDbConfig {
    fn default() -> Self {
        DuckDbConfig {
            path: PathBuf::from("./data/dataforge.duckdb"),
            memory_limit: "256MiB".into(),
            threads: 0,
            temp_directory: None,
            preserve_insertion_order: false,
            checkpoint_threshold: "64MiB".into(),
            read_connections: 4,
            write_queue: 256,
            write_wait_ms: 10_000,
            write_buffer_mib: 256,
            query_timeout_ms: 30_000,
            deferred_append_ms: 200,
            key_index_max_mib: 256 * 1024,
            key_index_verifier: None,
        }
    }
}

impl DuckDbConfig {
    /// The spill directory actually used.
    pub fn effective_temp_directory(&self) -> PathBuf {
        self.temp_directory
            .clone()
            .unwrap_or_else(|| beside(&self.path, ".tmp"))
    }

    /// The key index's size limit in bytes (at least 1 MiB).
    pub fn key_index_max_bytes(&self) -> usize {
        let mib = self.key_index_max_mib.max(1);
        usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// How many reads that sort a whole result (exports with `order`) run at once: DuckDB's sort
    /// pins about 16 MiB per thread while it merges, and past `memory_limit` a sort fails ("failed
    /// to pin block") instead of spilling, so one slot per 16 MiB per thread of the limit. A limit
    /// given as a share of RAM, or not understood, leaves only the read connections as the cap.
    pub fn sorting_reads(&self) -> usize {
        const PER_THREAD: u64 = 16 << 20;
        let per_sort = PER_THREAD * u64::from(self.effective_threads().max(1));
        match parse_bytes(&self.memory_limit) {
            Some(bytes) => (bytes / per_sort).max(1) as usize,
            None => self.read_connections.max(1) as usize,
        }
    }

    /// The settings DuckDB would refuse only once the database is opened, checked with a message
    /// naming the setting and an example.
    pub fn check(&self) -> Result<(), String> {
        let limit = self.memory_limit.trim();
        let share = limit
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
            .is_some_and(|p| p > 0.0 && p <= 100.0);
        if !share && parse_bytes(limit).is_none_or(|bytes| bytes == 0) {
            return Err(format!(
                "database.memory_limit `{}` is not a size: write it like \"2GiB\", \"512MB\" or \"80%\" (of the machine's memory)",
                self.memory_limit
            ));
        }
        Ok(())
    }

    /// The thread count actually used.
    pub fn effective_threads(&self) -> u32 {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        }
    }
}

/// A file beside the database file, named after it with `suffix` (`<path>.keys`, `<path>.tmp`).
pub(crate) fn beside(db_path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = db_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    db_path.with_file_name(name)
}

/// Bytes in a DuckDB size setting such as `256MiB`, `2GB` or `512 KB` (`None` for `80%`).
fn parse_bytes(setting: &str) -> Option<u64> {
    let setting = setting.trim();
    let split = setting
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(setting.len());
    let (number, unit) = setting.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    Some((number * unit as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_limit_is_a_size_or_a_share() {
        let config = |memory_limit: &str| DuckDbConfig {
            memory_limit: memory_limit.into(),
            ..DuckDbConfig::default()
        };
        for good in ["256MiB", "2GB", "512 KB", "80%", "1.5GiB"] {
            assert_eq!(config(good).check(), Ok(()), "{good}");
        }
        for bad in ["lots", "", "0", "12 parsecs", "150%"] {
            let message = config(bad).check().unwrap_err();
            assert!(
                message.contains("database.memory_limit") && message.contains("2GiB"),
                "{message}"
            );
        }
    }

    #[test]
    fn sorting_reads_follow_the_memory_limit_and_threads() {
        let config = |memory_limit: &str, threads| DuckDbConfig {
            memory_limit: memory_limit.into(),
            threads,
            read_connections: 4,
            ..DuckDbConfig::default()
        };
        assert_eq!(config("64MiB", 2).sorting_reads(), 2);
        assert_eq!(config("256MiB", 2).sorting_reads(), 8);
        assert_eq!(config("1GB", 4).sorting_reads(), 14);
        assert_eq!(config("8MiB", 2).sorting_reads(), 1);
        assert_eq!(config("80%", 2).sorting_reads(), 4);
        assert_eq!(parse_bytes("512 KB"), Some(512_000));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
    }
}
