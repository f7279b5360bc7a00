//! `dataforge serve`: binds the address first (a taken port fails before anything is created or
//! opened), then wires the store and serves the HTTP API until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use dataforge_auth::{Credentials, JwtVerifier, KeyRing};
use dataforge_http::{ConnectionLimits, CredentialLimits, HttpSettings};

use crate::settings::Settings;
use crate::wire::{StoreArgs, close, fail, load_settings, runtime, wire};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on, as HOST:PORT (default: 127.0.0.1:8000; e.g. localhost:8000,
    /// 0.0.0.0:8000).
    #[arg(long)]
    listen: Option<String>,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let mut settings = match load_settings(&args.store) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        settings.server.listen = listen;
    }
    match runtime() {
        Ok(runtime) => runtime.block_on(serve(settings)),
        Err(code) => code,
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let address = match settings.listen_address() {
        Ok(address) => address,
        Err(e) => return fail(&e.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => return fail(&format!("cannot listen on {address} (server.listen): {e}")),
    };
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(e) => return fail(&format!("cannot listen for shutdown signals: {e}")),
    };
    let authenticator = match credentials(&settings, address) {
        Ok(credentials) => credentials,
        Err(message) => return fail(&message),
    };
    let (app, store, catalog) = match wire(&settings).await {
        Ok(wired) => wired,
        Err(code) => return code,
    };
    let router = dataforge_http::router(app, http_settings(&settings, address, authenticator));
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

fn http_settings(
    settings: &Settings,
    address: SocketAddr,
    authenticator: Arc<Credentials>,
) -> HttpSettings {
    HttpSettings {
        auth_required: authenticator.required,
        authenticator,
        cors_origins: settings.server.cors_origins.clone(),
        explorer: settings.server.explorer,
        metrics: metrics_recorder(),
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
    }
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
