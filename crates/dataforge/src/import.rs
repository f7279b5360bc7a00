//! `dataforge import`: loads files, each as one all-or-nothing write, with a progress bar and a
//! summary. Into the embedded database through the same use case and write pipeline as HTTP
//! ([`embedded`]), or through a running server's API with `--url` ([`remote`]), so loading does
//! not need the server stopped.

mod embedded;
mod remote;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use dataforge_domain::records::BodyFormat;
use dataforge_domain::write::parse_write_params;
use indicatif::{ProgressBar, ProgressStyle};

use crate::FormatArg;
use crate::wire::{StoreArgs, fail, load_settings};

#[derive(Args)]
pub struct ImportArgs {
    /// Dataset to load into.
    #[arg(long)]
    dataset: String,
    /// Files to load, each as one all-or-nothing write.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// File format (default: from each file's extension).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// What to do with keys already stored or repeated: error, ignore, upsert or merge.
    #[arg(long, default_value = "error")]
    on_conflict: String,
    /// What to do with invalid records: reject (the whole file) or skip (them).
    #[arg(long, default_value = "reject")]
    on_error: String,
    /// Send the files to a running server (e.g. http://127.0.0.1:8000) instead of opening the
    /// database; the server may keep serving meanwhile.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the API key or JWT, when the server requires one.
    #[arg(long, env = "DATAFORGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: ImportArgs) -> ExitCode {
    let params = [
        ("on_conflict".to_owned(), args.on_conflict.clone()),
        ("on_error".to_owned(), args.on_error.clone()),
    ];
    let options = match parse_write_params(&params) {
        Ok(options) => options,
        Err(e) => {
            let flag = e.parameter.replace('_', "-");
            return fail(&format!("--{flag}: {}", e.message));
        }
    };
    match &args.url {
        Some(url) => remote::import(url, args.token.as_deref(), &args),
        None => match load_settings(args.store) {
            Ok(settings) => {
                embedded::import(&settings, &args.dataset, &args.files, args.format, options)
            }
            Err(code) => code,
        },
    }
}

/// The files with their formats, each one that has none reported.
fn with_formats(files: &[PathBuf], format: Option<FormatArg>) -> Vec<Option<(&Path, BodyFormat)>> {
    files
        .iter()
        .map(
            |path| match format.map(Into::into).or_else(|| format_of(path)) {
                Some(format) => Some((path.as_path(), format)),
                None => {
                    eprintln!(
                        "error: {}: cannot tell the format from the extension; pass --format",
                        path.display()
                    );
                    None
                }
            },
        )
        .collect()
}

/// The format a file's extension names.
pub fn format_of(path: &Path) -> Option<BodyFormat> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "csv" => BodyFormat::Csv,
        "ndjson" | "jsonl" => BodyFormat::Ndjson,
        "json" => BodyFormat::Json,
        "parquet" => BodyFormat::Parquet,
        "arrow" | "arrows" | "ipc" => BodyFormat::Arrow,
        _ => return None,
    })
}

/// A file read that advances a progress bar by the bytes read, and says "committing" once the
/// last byte is read (the write is then validated and stored, which takes a while for a big file).
pub struct Tracked {
    file: File,
    bar: ProgressBar,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 && !buf.is_empty() {
            self.bar.set_prefix("committing");
        }
        Ok(n)
    }
}

/// The file opened behind a progress bar (on stderr, hidden when it is not a terminal).
pub fn open_tracked(path: &Path) -> Result<(Tracked, ProgressBar), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("reading");
    bar.enable_steady_tick(Duration::from_millis(200));
    let tracked = Tracked {
        file,
        bar: bar.clone(),
    };
    Ok((tracked, bar))
}

/// What one file's write did, as printed after it.
pub struct Summary {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub skipped: u64,
    pub rejected: u64,
    /// One line per listed violation: row, field, message, code.
    pub violations: Vec<String>,
}

pub fn print_summary(path: &Path, started: Instant, summary: &Summary) {
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}: {} rows read in {elapsed:.1} s ({:.0} rows/s): inserted {}, updated {}, skipped {}, rejected {}",
        path.display(),
        summary.rows,
        summary.rows as f64 / elapsed.max(1e-3),
        summary.inserted,
        summary.updated,
        summary.skipped,
        summary.rejected
    );
    for line in &summary.violations {
        println!("  {line}");
    }
}

/// A violation as one line.
pub fn violation_line(row: u64, field: Option<&str>, message: &str, code: &str) -> String {
    format!(
        "row {row}, {}: {message} ({code})",
        field.unwrap_or("record")
    )
}

/// A conflicting key as one line: the key as a JSON object, and why.
pub fn conflict_line(key: &serde_json::Value, reason: &str) -> String {
    format!("key {key} ({reason})")
}
