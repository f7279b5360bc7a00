//! The `Host` a request names must be one this server answers to. A server on 127.0.0.1 is
//! otherwise reachable from any web page the user opens: the page's domain is re-pointed at
//! 127.0.0.1 ("DNS rebinding"), and the browser, seeing the same origin, lets the page read the
//! answers. A request naming another host is refused before any handler runs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::Problem;

/// Passes requests whose `Host` (port aside, any case) is allowed, or that name none (a browser
/// always does); answers `421` otherwise.
pub async fn check(
    State(allowed): State<Option<Arc<Vec<String>>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(allowed) = allowed else {
        return next.run(request).await;
    };
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("(not text)").to_owned())
    else {
        return next.run(request).await;
    };
    let name = host_name(&host);
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return next.run(request).await;
    }
    Problem::new(
        StatusCode::MISDIRECTED_REQUEST,
        "unknown-host",
        "Unknown host",
        format!(
            "this server does not answer to the host `{name}`; it answers to: {} (set server.allowed_hosts to add names)",
            allowed.join(", ")
        ),
    )
    .with("allowed_hosts", json!(allowed.as_slice()))
    .into_response()
}

/// The name part of a `Host` value: `[::1]:8000` -> `[::1]`, `localhost:8000` -> `localhost`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn ports_are_set_aside() {
        assert_eq!(host_name("localhost:8000"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8000"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }
}
