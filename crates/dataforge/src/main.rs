//! The dataforge binary: the composition root. It reads configuration, loads schemas, opens the
//! store, wires the adapters into the use cases and runs the chosen command.

mod settings;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dataforge_app::App;
use dataforge_domain::ports::DatasetStorage;
use dataforge_domain::schema::{Catalog, SchemaProblem};
use dataforge_duckdb::DuckDbStore;
use dataforge_formats::Formats;
use dataforge_http::HttpSettings;
use settings::Settings;
use tracing_subscriber::EnvFilter;

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
    Serve {
        /// Configuration file (default: ./dataforge.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory of schema files (default: ./schemas).
        #[arg(long)]
        schemas: Option<PathBuf>,
        /// Database file (default: ./data/dataforge.duckdb).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Address to listen on (default: 127.0.0.1:8000).
        #[arg(long)]
        listen: Option<String>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Check { dir, config } => {
            let settings = match Settings::load(config.as_deref()) {
                Ok(settings) => settings,
                Err(e) => return fail(&e.to_string()),
            };
            check(&dir.unwrap_or(settings.server.schemas))
        }
        Command::Serve {
            config,
            schemas,
            db,
            listen,
        } => {
            let mut settings = match Settings::load(config.as_deref()) {
                Ok(settings) => settings,
                Err(e) => return fail(&e.to_string()),
            };
            if let Some(schemas) = schemas {
                settings.server.schemas = schemas;
            }
            if let Some(db) = db {
                settings.database.path = db;
            }
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(serve(settings)),
                Err(e) => fail(&format!("cannot start the async runtime: {e}")),
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

async fn serve(settings: Settings) -> ExitCode {
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(e) => return fail(&format!("cannot listen for shutdown signals: {e}")),
    };
    let catalog: Catalog = match dataforge_schema_toml::load_catalog(&settings.server.schemas) {
        Ok(catalog) => catalog,
        Err(problems) => {
            print_problems(&problems);
            eprintln!("error: refusing to start on invalid schemas");
            return ExitCode::FAILURE;
        }
    };
    let catalog = Arc::new(catalog);
    let database = settings.database.clone();
    let opened = {
        let catalog = Arc::clone(&catalog);
        tokio::task::spawn_blocking(move || -> Result<DuckDbStore, String> {
            let store = DuckDbStore::open(&database).map_err(|e| e.to_string())?;
            store.prepare(&catalog).map_err(|e| e.to_string())?;
            Ok(store)
        })
        .await
    };
    let store = match opened {
        Ok(Ok(store)) => Arc::new(store),
        Ok(Err(message)) => return fail(&message),
        Err(e) => return fail(&format!("opening the database failed: {e}")),
    };
    let app = App::new(
        Arc::clone(&catalog),
        store.clone(),
        store.clone(),
        Arc::new(Formats),
        settings.limits(),
    );
    let router = dataforge_http::router(
        app,
        HttpSettings {
            max_body_bytes: settings.server.max_body_bytes,
        },
    );

    let address = match settings.listen_address() {
        Ok(address) => address,
        Err(e) => return fail(&e.to_string()),
    };
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

    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    tracing::info!("shutting down: finishing queued writes");
    let closing = Arc::clone(&store);
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("server error: {e}")),
    }
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
