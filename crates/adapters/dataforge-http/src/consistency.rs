//! Read-your-writes across replicas, at the edge: a successful write answers with the header
//! `Dataforge-Consistency` (the store's token for the primary's position after it), and a request
//! that sends it back is served by reads that see everything up to it (see [`crate::auth::Acting`]).
//! Stores whose every read sees every write (DuckDB) have no token, and no header is sent.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::HttpState;

/// The header that carries a consistency token, both ways.
pub const CONSISTENCY_HEADER: &str = "dataforge-consistency";

/// Adds the token to the answer of a successful write.
pub async fn stamp_writes(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path().starts_with("/v1/datasets/")
        && !request.uri().path().ends_with("/query");
    let mut response = next.run(request).await;
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

/// The token a request presents, if any.
pub(crate) fn presented(parts: &axum::http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
