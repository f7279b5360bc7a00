//! The dataforge binary: the composition root. Each command is a module of its own; `wire` reads
//! the configuration, loads the schemas, opens the store and wires the adapters into the use cases.

mod check;
mod cluster;
mod database;
mod generate;
mod import;
mod keys;
mod migrate;
mod serve;
mod settings;
mod wire;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Record batches are built on request threads and freed on the writer's, many small ones per
/// second: mimalloc handles that cross-thread traffic with less contention than glibc's malloc
/// (single-record writes, 64 clients: 13,644 -> 17,174 requests/s, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dataforge",
    version,
    about = "A schema-driven HTTP data API on embedded DuckDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API for every dataset in the schema directory.
    Serve(serve::ServeArgs),
    /// Load files into a dataset through the same write pipeline as the HTTP API.
    Import(import::ImportArgs),
    /// Walk a key index directory read-only and print how many entries it holds (run by the
    /// server in a child process before it trusts its index).
    #[command(hide = true)]
    VerifyKeyIndex { dir: PathBuf },
    /// Write deterministic synthetic records of a dataset to a file.
    Generate(generate::GenerateArgs),
    /// Reorder a dataset's stored rows by its schema's `cluster_by` fields, so filters on them
    /// read a small part of the table (on the embedded database; run it while the server is stopped).
    Cluster(cluster::ClusterArgs),
    /// Compare the database with the schema files and print the plan; with --apply, apply it.
    Migrate(migrate::MigrateArgs),
    /// Manage API keys (stored as hashes beside the database, or at auth.keys_file).
    Keys(keys::KeysArgs),
    /// Check every schema file and print every problem found.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines (one per request at `info`) are written by a thread of their own, in batches, so a
    // request never waits on a write to stderr; nothing is dropped (a full buffer makes the logging
    // thread wait), and the guard flushes what is left when `main` returns.
    let (log_writer, _log_flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // a server logs each request; a command keeps its terminal for its progress bar and
            // summary, and says only what went wrong
            EnvFilter::new(match cli.command {
                Command::Serve(_) => "info",
                _ => "warn",
            })
        }))
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Import(args) => import::run(args),
        Command::VerifyKeyIndex { dir } => match database::walk_key_index(&dir) {
            Ok(entries) => {
                println!("{entries}");
                ExitCode::SUCCESS
            }
            Err(message) => wire::fail(&message),
        },
        Command::Generate(args) => generate::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Check(args) => check::run(args),
    }
}
