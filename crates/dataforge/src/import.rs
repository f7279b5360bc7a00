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
use dataforge_domain::records::ReadOptions;
use dataforge_domain::write::parse_write_params;
use dataforge_formats::read_options;
use dataforge_formats::table::{self, Format};
use indicatif::{ProgressBar, ProgressStyle};

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
    #[arg(long, value_parser = readable)]
    format: Option<&'static Format>,
    #[command(flatten)]
    read: ReadArgs,
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
        None => match load_settings(&args.store) {
            Ok(settings) => embedded::import(&settings, &args, options),
            Err(code) => code,
        },
    }
}

/// A file to load: its path, format and how that format is spelled.
pub struct Source<'a> {
    pub path: &'a Path,
    pub format: &'static Format,
    pub read: ReadOptions,
}

/// The files with their formats and read options; each one that has none is reported.
fn sources<'a>(
    files: &'a [PathBuf],
    format: Option<&'static Format>,
    read: &ReadArgs,
) -> Vec<Option<Source<'a>>> {
    files
        .iter()
        .map(|path| {
            let Some(format) = format.or_else(|| format_of(path)) else {
                eprintln!(
                    "error: {}: cannot tell the format from the extension; pass --format",
                    path.display()
                );
                return None;
            };
            match read.for_format(format) {
                Ok(read) => Some(Source { path, format, read }),
                Err(message) => {
                    eprintln!("error: {}: {message}", path.display());
                    None
                }
            }
        })
        .collect()
}

/// The readable format a file's extension names, from the formats table.
pub fn format_of(path: &Path) -> Option<&'static Format> {
    let extension = path.extension()?.to_str()?;
    table::by_extension(extension).filter(|f| f.can_decode())
}

/// `--format` of `import`: a format of the table that can be read.
pub fn readable(name: &str) -> Result<&'static Format, String> {
    table::decodable()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("formats read: {}", table::names(table::decodable())))
}

/// How the files of an import are spelled (the read options of the formats table); each is
/// checked against a file's format before the file is read.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReadArgs {
    /// CSV: the byte between cells: `,` (default), `;`, `|` or `tab`.
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV: a cell spelled so is null (e.g. NA); an empty cell always is.
    #[arg(long)]
    null: Option<String>,
}

impl ReadArgs {
    /// The options given, as `name=value` pairs (the POST's query parameters of the same names).
    pub fn pairs(&self) -> Vec<(String, String)> {
        [("delimiter", &self.delimiter), ("null", &self.null)]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
            .collect()
    }

    /// The read options of a file in `format`; `Err` names the option as given on the command line.
    fn for_format(&self, format: &Format) -> Result<ReadOptions, String> {
        read_options(format, &self.pairs()).map_err(|e| format!("--{}: {}", e.parameter, e.message))
    }
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
