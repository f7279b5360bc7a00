//! The dataforge binary: the composition root. It reads configuration, loads schemas, opens the
//! store, wires the adapters into the use cases and runs the chosen command.

mod generate;
mod import;
mod keys;
mod migrate;
mod settings;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use dataforge_app::App;
use dataforge_auth::{Credentials, JwtVerifier, KeyRing};
use dataforge_domain::ports::{DatasetStorage, MigrationPolicy, MigrationReport};
use dataforge_domain::schema::{Catalog, SchemaProblem};
use dataforge_domain::write::parse_write_params;
use dataforge_duckdb::DuckDbStore;
use dataforge_formats::Formats;
use dataforge_http::{ConnectionLimits, CredentialLimits, HttpSettings};
use settings::Settings;
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

/// Where the configuration, the schemas and the database are: shared by every command that opens
/// the store.
#[derive(Args)]
struct StoreArgs {
    /// Configuration file (default: ./dataforge.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of schema files (default: ./schemas).
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// Database file (default: ./data/dataforge.duckdb).
    #[arg(long)]
    db: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API for every dataset in the schema directory.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (default: 127.0.0.1:8000).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Load files into a dataset through the same write pipeline as the HTTP API.
    Import {
        /// Dataset to load into.
        #[arg(long)]
        dataset: String,
        /// Files to load, each as one all-or-nothing write.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// File format (default: from each file's extension).
        #[arg(long, value_parser = import::readable)]
        format: Option<&'static dataforge_formats::Format>,
        #[command(flatten)]
        read: import::ReadArgs,
        /// What to do with keys already stored or repeated: error, ignore, upsert or merge.
        #[arg(long, default_value = "error")]
        on_conflict: String,
        /// What to do with invalid records: reject (the whole file) or skip (them).
        #[arg(long, default_value = "reject")]
        on_error: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Walk a key index directory read-only and print how many entries it holds (run by the
    /// server in a child process before it trusts its index).
    #[command(hide = true)]
    VerifyKeyIndex { dir: PathBuf },
    /// Write deterministic synthetic rows of a dataset (well_production) to a file.
    Generate {
        /// Dataset to generate (well_production).
        dataset: String,
        /// Number of rows.
        #[arg(long)]
        rows: u64,
        /// Index of the first row, so that files of consecutive ranges hold distinct keys.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Output format.
        #[arg(long, value_parser = generate::writable)]
        format: &'static dataforge_formats::Format,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Directory of schema files (default: ./schemas).
        #[arg(long)]
        schemas: Option<PathBuf>,
    },
    /// Reorder a dataset's stored rows by its schema's `cluster_by` fields, so filters on them
    /// read a small part of the table (on the embedded database; run it while the server is stopped).
    Cluster {
        /// Dataset to cluster.
        #[arg(long)]
        dataset: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Compare the database with the schema files and print the plan; with --apply, apply it.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
        /// Apply the safe and checked steps (a start applies those too).
        #[arg(long)]
        apply: bool,
        /// With --apply, also apply destructive steps: removed fields and datasets, changed
        /// types and keys. Their data is lost.
        #[arg(long, requires = "apply")]
        allow_destructive: bool,
        /// List every schema version the database has applied, and stop.
        #[arg(long, conflicts_with_all = ["apply", "allow_destructive"])]
        history: bool,
    },
    /// Manage API keys (stored as hashes beside the database, or at auth.keys_file).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check every schema file and print every problem found.
    Check {
        /// Directory of schema files (default: the configured one, ./schemas).
        dir: Option<PathBuf>,
        /// Configuration file (default: ./dataforge.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Settings from file and environment, with the `--schemas` and `--db` flags applied on top.
fn load_settings(store: StoreArgs) -> Result<Settings, ExitCode> {
    let StoreArgs {
        config,
        schemas,
        db,
    } = store;
    let mut settings = Settings::load(config.as_deref()).map_err(|e| fail(&e.to_string()))?;
    if let Some(schemas) = schemas {
        settings.server.schemas = schemas;
    }
    if let Some(db) = db {
        settings.database.path = db;
    }
    // the key index is walked by this same program, in a child process, before it is trusted
    settings.database.key_index_verifier = std::env::current_exe().ok();
    Ok(settings)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("cannot start the async runtime: {e}")))
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
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::VerifyKeyIndex { dir } => match dataforge_duckdb::walk_key_index(&dir) {
            Ok(entries) => {
                println!("{entries}");
                ExitCode::SUCCESS
            }
            Err(message) => fail(&message),
        },
        Command::Generate {
            dataset,
            rows,
            start,
            format,
            output,
            schemas,
        } => {
            let dir = schemas.unwrap_or_else(|| settings::ServerSettings::default().schemas);
            let catalog = match dataforge_schema_toml::load_catalog(&dir) {
                Ok(catalog) => catalog,
                Err(problems) => {
                    print_problems(&problems);
                    return ExitCode::FAILURE;
                }
            };
            let Some(schema) = catalog.get(&dataset) else {
                return fail(&format!(
                    "no dataset named `{dataset}` in {}",
                    dir.display()
                ));
            };
            match generate::generate(schema, start, rows, format, &output) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
        Command::Cluster { dataset, store } => {
            let settings = match load_settings(store) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            runtime.block_on(async {
                let (app, store, _) = match wire(&settings).await {
                    Ok(wired) => wired,
                    Err(code) => return code,
                };
                let started = std::time::Instant::now();
                let clustered = app.cluster(&dataset).await;
                drop(app);
                close(store).await;
                match clustered {
                    Ok(rows) => {
                        println!(
                            "{dataset}: {rows} rows rewritten in cluster_by order in {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e.to_string()),
                }
            })
        }
        Command::Import {
            dataset,
            files,
            format,
            read,
            on_conflict,
            on_error,
            store,
        } => {
            let settings = match load_settings(store) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let params = [
                ("on_conflict".to_owned(), on_conflict),
                ("on_error".to_owned(), on_error),
            ];
            let options = match parse_write_params(&params) {
                Ok(options) => options,
                Err(e) => {
                    return fail(&format!(
                        "--{}: {}",
                        e.parameter.replace('_', "-"),
                        e.message
                    ));
                }
            };
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            runtime.block_on(async {
                let (app, store, _) = match wire(&settings).await {
                    Ok(wired) => wired,
                    Err(code) => return code,
                };
                if let Err(e) = app.dataset(&dataset) {
                    close(store).await;
                    return fail(&e.to_string());
                }
                let ok = import::import(&app, &dataset, &files, format, &read, options).await;
                drop(app);
                close(store).await;
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        Command::Migrate {
            store,
            apply,
            allow_destructive,
            history,
        } => match load_settings(store) {
            Ok(settings) if history => migrate::history(&settings),
            Ok(settings) => migrate::migrate(
                &settings,
                MigrationPolicy {
                    apply,
                    allow_destructive,
                    deliberate: true,
                },
            ),
            Err(code) => code,
        },
        Command::Check { dir, config } => {
            let settings = match Settings::load(config.as_deref()) {
                Ok(settings) => settings,
                Err(e) => return fail(&e.to_string()),
            };
            check(&dir.unwrap_or(settings.server.schemas))
        }
        Command::Keys { command, store } => match load_settings(store) {
            Ok(settings) => keys::run(command, &settings),
            Err(code) => code,
        },
        Command::Serve { store, listen } => {
            let mut settings = match load_settings(store) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            match runtime() {
                Ok(runtime) => runtime.block_on(serve(settings)),
                Err(code) => code,
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn print_problems(problems: &[SchemaProblem]) {
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!("{} problem(s) found", problems.len());
}

fn check(dir: &std::path::Path) -> ExitCode {
    match dataforge_schema_toml::load_catalog(dir) {
        Ok(catalog) => {
            let names: Vec<&str> = catalog.iter().map(|d| d.name.as_str()).collect();
            println!(
                "ok: {} dataset(s) in {}: {}",
                catalog.len(),
                dir.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            ExitCode::FAILURE
        }
    }
}

/// The composition root: loads the schemas, opens and prepares the store, and wires the adapters
/// into the use cases. On failure, the problem is printed and the exit code returned.
async fn wire(settings: &Settings) -> Result<(App, Arc<DuckDbStore>, Arc<Catalog>), ExitCode> {
    let catalog = match dataforge_schema_toml::load_catalog(&settings.server.schemas) {
        Ok(catalog) => Arc::new(catalog),
        Err(problems) => {
            print_problems(&problems);
            eprintln!("error: refusing to start on invalid schemas");
            return Err(ExitCode::FAILURE);
        }
    };
    let database = settings.database.clone();
    let opened = {
        let catalog = Arc::clone(&catalog);
        tokio::task::spawn_blocking(move || -> Result<(DuckDbStore, MigrationReport), String> {
            let store = DuckDbStore::open(&database).map_err(|e| e.to_string())?;
            let report = store
                .prepare(&catalog, MigrationPolicy::SERVE)
                .map_err(|e| e.to_string())?;
            Ok((store, report))
        })
        .await
    };
    let (store, report) = match opened {
        Ok(Ok((store, report))) => (Arc::new(store), report),
        Ok(Err(message)) => return Err(fail(&message)),
        Err(e) => return Err(fail(&format!("opening the database failed: {e}"))),
    };
    let app = App::new(
        Arc::clone(&catalog),
        store.clone(),
        store.clone(),
        Arc::new(Formats),
        settings.limits(),
    )
    .with_versions(report.versions)
    .with_health(store.clone());
    Ok((app, store, catalog))
}

/// Finishes queued writes and checkpoints, off the async executor.
async fn close(store: Arc<DuckDbStore>) {
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

async fn serve(settings: Settings) -> ExitCode {
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(e) => return fail(&format!("cannot listen for shutdown signals: {e}")),
    };
    let (app, store, catalog) = match wire(&settings).await {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    let address = match settings.listen_address() {
        Ok(address) => address,
        Err(e) => return fail(&e.to_string()),
    };
    let authenticator = match credentials(&settings, address) {
        Ok(credentials) => credentials,
        Err(message) => return fail(&message),
    };
    let router = dataforge_http::router(
        app,
        HttpSettings {
            authenticator: authenticator.clone(),
            cors_origins: settings.server.cors_origins.clone(),
            metrics: metrics_recorder(),
            auth_required: authenticator.required,
            credential_limits: CredentialLimits {
                requests_per_second: settings.auth.requests_per_second,
                max_exports: settings.auth.max_exports_per_credential,
            },
            max_body_bytes: settings.server.max_body_bytes,
            max_json_body_bytes: settings.server.max_json_body_bytes,
            max_exports_per_client: settings.server.max_exports_per_client,
            max_streamed_uploads: settings.server.max_streamed_uploads,
            allowed_hosts: settings.allowed_hosts(address),
            stalled_client: std::time::Duration::from_millis(settings.server.stalled_client_ms),
        },
    );
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => return fail(&format!("cannot listen on {address}: {e}")),
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| address.to_string());
    let names: Vec<&str> = catalog.iter().map(|d| d.name.as_str()).collect();
    tracing::info!(datasets = %names.join(","), "listening on http://{bound}");

    let limits = ConnectionLimits {
        header_read: std::time::Duration::from_millis(settings.server.header_read_timeout_ms),
        max_connections: settings.server.max_connections,
    };
    dataforge_http::serve(listener, router, limits, shutdown).await;
    tracing::info!("shutting down: finishing queued writes");
    close(store).await;
    ExitCode::SUCCESS
}

/// Installs the Prometheus recorder behind the `metrics` facade; `None` (and a warning) if one is
/// installed already.
fn metrics_recorder() -> Option<dataforge_http::RenderMetrics> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let seconds = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let writes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &seconds)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("dataforge_writer_group_writes".into()),
                &writes,
            )
        })
        .and_then(|b| b.install_recorder());
    match installed {
        Ok(handle) => Some(Arc::new(move || handle.render())),
        Err(e) => {
            tracing::warn!(error = %e, "metrics are not recorded");
            None
        }
    }
}

/// The credentials requests are checked against; says in the log whether they are required.
fn credentials(settings: &Settings, listen: SocketAddr) -> Result<Arc<Credentials>, String> {
    let keys = KeyRing::open(settings.keys_file()).map_err(|e| e.to_string())?;
    let jwt = settings
        .auth
        .jwt
        .as_ref()
        .map(JwtVerifier::new)
        .transpose()?;
    let required = settings.auth_required(listen);
    if !required && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "auth.required = false on a network address: anyone who can reach it may read and write every dataset");
    }
    tracing::info!(
        required,
        keys = keys.len(),
        jwt = jwt.is_some(),
        "authentication"
    );
    Ok(Arc::new(Credentials {
        keys,
        jwt,
        required,
    }))
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives while starting is not
/// lost, nor kills the process), returning a future that resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutdown signal received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        })
    }
}
