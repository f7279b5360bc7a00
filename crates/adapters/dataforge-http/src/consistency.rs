//! Read-your-writes across replicas, at the edge: a successful write answers with the header
//! `Dataforge-Consistency` (the store's token for the primary's position after it), a request that
//! sends it back is served by reads that see everything up to it (see [`crate::auth::Acting`]),
//! and a read's answer says where it was served from (`Dataforge-Served-By`). Stores whose every
//! read sees every write (DuckDB) have neither, and no header is sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use dataforge_app::App;
use dataforge_domain::ports::ReadOrigin;

use crate::HttpState;

/// The header that carries a consistency token, both ways.
pub const CONSISTENCY_HEADER: &str = "dataforge-consistency";
/// The header that says where a read was served from (`primary` or `replica`).
pub const SERVED_BY_HEADER: &str = "dataforge-served-by";

/// Gives the request a place for its store to note where its reads were served from, and
/// stamps the answer: where reads came from, and after a successful write, the token.
pub async fn stamp(State(state): State<HttpState>, mut request: Request, next: Next) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path().starts_with("/v1/datasets/")
        && !request.uri().path().ends_with("/query");
    let origin = Arc::new(ReadOrigin::default());
    request.extensions_mut().insert(Arc::clone(&origin));
    let mut response = next.run(request).await;
    if let Some(served_by) = origin.served_by() {
        response
            .headers_mut()
            .insert(SERVED_BY_HEADER, HeaderValue::from_static(served_by));
    }
    if write && response.status().is_success() {
        match state.app.consistency_token().await {
            Ok(Some(token)) => {
                if let Ok(value) = HeaderValue::from_str(&token) {
                    response.headers_mut().insert(CONSISTENCY_HEADER, value);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no consistency token for a write's answer"),
        }
    }
    response
}

/// Holds a request's use cases to the token it presents, noting where its reads came from.
pub(crate) fn for_request(app: &mut App, parts: &Parts) {
    let Some(origin) = parts.extensions.get::<Arc<ReadOrigin>>() else {
        return;
    };
    let token = parts
        .headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    app.read_after(token, Arc::clone(origin));
}
