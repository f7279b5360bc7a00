//! `dataforge import`: loads files through the same use case and write pipeline as HTTP, with a
//! progress bar and a summary. Each file is one all-or-nothing write.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dataforge_app::{App, AppError};
use dataforge_domain::records::{BodyFormat, ReadOptions};
use dataforge_domain::write::WriteOptions;
use dataforge_formats::read_options;
use dataforge_formats::table::{self, Format};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// The options given, as `name=value` pairs.
    fn pairs(&self) -> Vec<(String, String)> {
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

/// A file read that advances a progress bar by the bytes read.
struct Tracked {
    file: File,
    bar: ProgressBar,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Imports every file in turn; returns whether all succeeded.
pub async fn import(
    app: &App,
    dataset: &str,
    files: &[PathBuf],
    format: Option<&'static Format>,
    read: &ReadArgs,
    options: WriteOptions,
) -> bool {
    let mut all_ok = true;
    for path in files {
        let Some(format) = format.or_else(|| format_of(path)) else {
            eprintln!(
                "error: {}: cannot tell the format from the extension; pass --format",
                path.display()
            );
            all_ok = false;
            continue;
        };
        let read = match read.for_format(format) {
            Ok(read) => read,
            Err(message) => {
                eprintln!("error: {}: {message}", path.display());
                all_ok = false;
                continue;
            }
        };
        match import_file(app, dataset, path, (format.id(), read), options).await {
            Ok(()) => {}
            Err(message) => {
                eprintln!("error: {}: {message}", path.display());
                all_ok = false;
            }
        }
    }
    all_ok
}

async fn import_file(
    app: &App,
    dataset: &str,
    path: &Path,
    (format, read): (BodyFormat, ReadOptions),
    options: WriteOptions,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let seen = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ticker = {
        let (bar, seen) = (bar.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                let rows = seen.load(Ordering::Relaxed);
                let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let body = BufReader::with_capacity(
        1 << 20,
        Tracked {
            file,
            bar: bar.clone(),
        },
    );
    let result = app
        .ingest_counted(dataset, format, read, body, options, Arc::clone(&seen))
        .await;
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = result.map_err(|e| describe(&e))?;
    let rows = seen.load(Ordering::Relaxed);
    let o = summary.outcome;
    println!(
        "{}: {rows} rows read in {elapsed:.1} s ({:.0} rows/s): inserted {}, updated {}, skipped {}, rejected {}",
        path.display(),
        rows as f64 / elapsed.max(1e-3),
        o.inserted,
        o.updated,
        o.skipped,
        summary.rejected
    );
    for v in &summary.violations {
        println!(
            "  row {}, {}: {} ({})",
            v.row,
            v.field.as_deref().unwrap_or("record"),
            v.message,
            v.code
        );
    }
    Ok(())
}

/// An error as text, with every listed violation or conflicting key on its own line.
fn describe(error: &AppError) -> String {
    let mut text = error.to_string();
    match error {
        AppError::Invalid { violations, total } => {
            for v in violations {
                text.push_str(&format!(
                    "\n  row {}, {}: {} ({})",
                    v.row,
                    v.field.as_deref().unwrap_or("record"),
                    v.message,
                    v.code
                ));
            }
            if *total > violations.len() as u64 {
                text.push_str(&format!(
                    "\n  ... and {} more",
                    *total - violations.len() as u64
                ));
            }
        }
        AppError::Conflict { keys, total } => {
            for key in keys {
                let values: Vec<String> = key.key.iter().map(ToString::to_string).collect();
                text.push_str(&format!("\n  key {} ({:?})", values.join("/"), key.reason));
            }
            if *total > keys.len() as u64 {
                text.push_str(&format!("\n  ... and {} more", *total - keys.len() as u64));
            }
        }
        _ => {}
    }
    text
}
