//! The inbound HTTP adapter: axum routes over the application use cases, with every error answered
//! as RFC 9457 problem+json.

mod auth;
mod body;
mod consistency;
mod encode;
mod explorer;
mod exports;
mod framework;
mod handlers;
mod host;
mod negotiate;
mod openapi;
mod operations;
mod problem;
mod problem_types;
mod serve;
mod strict_json;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use dataforge_app::App;
use dataforge_domain::ports::Authenticator;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::map_request_body::MapRequestBodyLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use auth::CredentialLimits;
pub use handlers::HttpState;
pub use operations::RenderMetrics;
pub use problem::Problem;
pub use serve::{ConnectionLimits, serve};

/// HTTP settings from configuration.
#[derive(Clone)]
pub struct HttpSettings {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest body of the endpoints that read a whole JSON document (`query`, `update`,
    /// `delete`, a record's `PATCH` and `PUT`); larger ones get 413.
    pub max_json_body_bytes: usize,
    /// Host names requests may name (`Host`, port aside); `None` for any.
    pub allowed_hosts: Option<Vec<String>>,
    /// How long a client may stop sending a body (408) or reading a streamed answer (cut, its
    /// database connection freed).
    pub stalled_client: std::time::Duration,
    /// Streamed exports one client (IP address) may have open at once.
    pub max_exports_per_client: usize,
    /// Streamed uploads decoded at once.
    pub max_streamed_uploads: usize,
    /// Who a request acts for.
    pub authenticator: Arc<dyn Authenticator>,
    /// Limits per credential.
    pub credential_limits: CredentialLimits,
    /// Origins a browser page may call the API from (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// What `/metrics` shows, when metrics are recorded.
    pub metrics: Option<RenderMetrics>,
    /// Whether requests need a credential (said in the API description).
    pub auth_required: bool,
    /// Whether the explorer's page is served at `/` and `/datasets/...`.
    pub explorer: bool,
}

/// The API's routes, with request logging (one line per request: method, path, status, latency).
pub fn router(app: App, settings: HttpSettings) -> Router {
    let contract = Arc::new(openapi::Contract::new(
        app.catalog(),
        settings.auth_required,
    ));
    let state = HttpState {
        app,
        max_body_bytes: settings.max_body_bytes,
        stalled_client: settings.stalled_client,
        exports: exports::ExportSlots::new(settings.max_exports_per_client),
        credential_exports: exports::ExportSlots::new(settings.credential_limits.max_exports),
        metrics: settings.metrics.clone(),
        contract,
        uploads: Arc::new(tokio::sync::Semaphore::new(
            settings.max_streamed_uploads.max(1),
        )),
    };
    // bodies sent with `Content-Encoding: gzip`, `deflate` or `zstd` are decoded as they stream
    // in (the body limits count decoded bytes); any other encoding is 415. Only on the methods
    // that take a body, so that reads pay nothing for it.
    let decoded = tower::ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new())
        .layer(MapRequestBodyLayer::new(axum::body::Body::new));
    // answers to reads are compressed when the client accepts gzip or zstd (not Parquet, which
    // compresses itself); not on writes and small answers, which would pay for nothing
    let compressed = CompressionLayer::new().compress_when(DefaultPredicate::new().and(
        NotForContentType::const_new("application/vnd.apache.parquet"),
    ));
    let router = Router::new();
    let router = if settings.explorer {
        router
            .route("/", get(explorer::page))
            .route("/datasets", get(explorer::page))
            .route("/datasets/{*view}", get(explorer::page))
            .route(
                "/explorer/{file}",
                get(explorer::file).layer(compressed.clone()),
            )
    } else {
        router
    };
    let router = router
        .route("/health", get(handlers::health))
        .route("/health/ready", get(operations::ready))
        .route("/metrics", get(operations::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/docs", get(openapi::docs))
        .route("/problems", get(problem_types::index))
        .route("/problems/{slug}", get(problem_types::one))
        .route(
            "/v1/datasets",
            get(handlers::list_datasets).layer(compressed.clone()),
        )
        .route("/v1/credential", get(handlers::credential))
        .route("/v1/datasets/{dataset}", get(handlers::get_dataset))
        .route(
            "/v1/datasets/{dataset}/records",
            post(handlers::insert_records)
                .patch(handlers::update_where)
                .layer(decoded.clone())
                .merge(get(handlers::list_records).layer(compressed.clone()))
                .merge(delete(handlers::delete_where)),
        )
        .route(
            "/v1/datasets/{dataset}/records/{*key}",
            patch(handlers::patch_record)
                .put(handlers::put_record)
                .layer(decoded.clone())
                .merge(get(handlers::get_record).delete(handlers::delete_record)),
        )
        .route(
            "/v1/datasets/{dataset}/update",
            post(handlers::update_by_body).layer(decoded.clone()),
        )
        .route(
            "/v1/datasets/{dataset}/delete",
            post(handlers::delete_by_body).layer(decoded.clone()),
        )
        .route("/v1/datasets/{dataset}/count", get(handlers::count_records))
        .route(
            "/v1/datasets/{dataset}/aggregate",
            get(handlers::aggregate).layer(compressed.clone()),
        )
        .route(
            "/v1/datasets/{dataset}/query",
            post(handlers::query).layer(decoded.layer(compressed)),
        )
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.max_json_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            consistency::stamp,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(Edge {
                allowed_hosts: settings.allowed_hosts,
                max_json_body_bytes: settings.max_json_body_bytes,
                gate: auth::Gate::new(settings.authenticator, settings.credential_limits),
            }),
            edge,
        ))
        // an `X-Request-Id` sent is kept, else one is made; the edge logs it, the answer echoes it
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state);
    match cors(&settings.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Browser pages of `origins` may call the API (preflights answered before the edge, since a
/// browser sends them without credentials).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allowed = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let request_id = HeaderName::from_static("x-request-id");
    let consistency = HeaderName::from_static(consistency::CONSISTENCY_HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::ACCEPT,
                request_id.clone(),
                consistency.clone(),
            ])
            .expose_headers([
                request_id,
                consistency,
                HeaderName::from_static(consistency::SERVED_BY_HEADER),
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The probes, the documentation pages and the explorer's page (which holds no data) answer
/// whoever asks.
fn open_to_all(path: &str) -> bool {
    matches!(
        path,
        "/" | "/health" | "/health/ready" | "/docs" | "/problems" | "/datasets"
    ) || ["/problems/", "/datasets/", "/explorer/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// What every request is checked against before routing.
struct Edge {
    allowed_hosts: Option<Vec<String>>,
    max_json_body_bytes: usize,
    gate: auth::Gate,
}

/// The edge of every request, in one middleware (each costs a boxed future per request): the
/// `Host` check (`host.rs`), the request target's length and the framework's refusals as
/// problems (`framework.rs`), and one log line per request (method, path, status, latency), as
/// one event: no span is built per request, which at tens of thousands of requests a second costs
/// more than the line itself.
async fn edge(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let started = std::time::Instant::now();
    let refused = edge
        .allowed_hosts
        .as_deref()
        .and_then(|allowed| host::refused(&request, allowed))
        .or_else(|| framework::target_too_long(&request));
    // the probes answer whoever asks
    let refused = match refused {
        Some(problem) => Some(problem.into_response()),
        None if open_to_all(&path) => None,
        None => edge.gate.refusal(&mut request),
    };
    let response = match refused {
        Some(response) => response,
        None => {
            let encoding = framework::encoding(&request);
            let response = next.run(request).await;
            framework::as_problem(response, encoding, edge.max_json_body_bytes).await
        }
    };
    let took = started.elapsed();
    operations::record(&method, &path, response.status(), took);
    tracing::info!(
        %method,
        path,
        request_id,
        status = response.status().as_u16(),
        latency_us = took.as_micros() as u64,
        "request"
    );
    response
}
