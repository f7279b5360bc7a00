//! The operators' endpoints: `/health/ready` (the store can serve) and `/metrics` (Prometheus text,
//! `admin` on every dataset), and the request metrics the edge records for every answer.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use axum::extract::State;

use crate::auth::Acting;
use crate::handlers::HttpState;
use crate::problem::{Problem, from_app_error};

/// Renders every metric recorded so far, in the Prometheus text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /health/ready`: `200` when the database answers and the writer runs, else `503` saying why.
pub async fn ready(State(state): State<HttpState>) -> Response {
    match state.app.ready().await {
        Ok(()) => {
            let replicas = state.app.replicas();
            let mut body = json!({"status": "ready"});
            if !replicas.is_empty() {
                body["replicas"] = json!(replicas);
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                &why,
            )
            .with("reason", json!(why))
            .into_response()
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(Acting(state): Acting) -> Result<Response, Problem> {
    state
        .app
        .observe()
        .await
        .map_err(|e| from_app_error(e, None))?;
    let Some(render) = &state.metrics else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-metrics",
            "No metrics",
            "this server records no metrics",
        ));
    };
    let mut response = render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// Counts an answer and its latency, by route (the pattern, so that labels stay few), method and
/// status.
pub(crate) fn record(method: &Method, path: &str, status: StatusCode, took: Duration) {
    let (route, method) = (route_of(path), method_name(method));
    metrics::counter!("dataforge_http_requests_total", "route" => route, "method" => method, "status" => status_class(status))
        .increment(1);
    metrics::histogram!("dataforge_http_request_duration_seconds", "route" => route, "method" => method)
        .record(took.as_secs_f64());
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    // each status its own label would do too, but these are the ones a dashboard asks for
    match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        507 => "507",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// The route pattern a path matches, as the router declares them.
pub(crate) fn route_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] | ["datasets", ..] => "explorer page",
        ["explorer", _] => "/explorer/{file}",
        ["health"] => "/health",
        ["health", "ready"] => "/health/ready",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["docs"] => "/docs",
        ["v1", "credential"] => "/v1/credential",
        ["v1", "datasets"] => "/v1/datasets",
        ["v1", "datasets", _] => "/v1/datasets/{dataset}",
        ["v1", "datasets", _, "records"] => "/v1/datasets/{dataset}/records",
        ["v1", "datasets", _, "records", _, ..] => "/v1/datasets/{dataset}/records/{key}",
        ["v1", "datasets", _, "update"] => "/v1/datasets/{dataset}/update",
        ["v1", "datasets", _, "delete"] => "/v1/datasets/{dataset}/delete",
        ["v1", "datasets", _, "count"] => "/v1/datasets/{dataset}/count",
        ["v1", "datasets", _, "aggregate"] => "/v1/datasets/{dataset}/aggregate",
        ["v1", "datasets", _, "query"] => "/v1/datasets/{dataset}/query",
        _ => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn paths_count_under_their_route_pattern() {
        for (path, route) in [
            ("/health", "/health"),
            ("/v1/datasets", "/v1/datasets"),
            ("/v1/datasets/wells", "/v1/datasets/{dataset}"),
            (
                "/v1/datasets/wells/records",
                "/v1/datasets/{dataset}/records",
            ),
            (
                "/v1/datasets/wells/records/1/2024-01-01",
                "/v1/datasets/{dataset}/records/{key}",
            ),
            ("/v1/datasets/wells/query", "/v1/datasets/{dataset}/query"),
            ("/etc/passwd", "unmatched"),
            ("/", "explorer page"),
            ("/datasets/wells/records/1", "explorer page"),
            ("/explorer/app.js", "/explorer/{file}"),
            (
                "/v1/datasets/wells/records/",
                "/v1/datasets/{dataset}/records/{key}",
            ),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }
}
