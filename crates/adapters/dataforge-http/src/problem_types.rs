//! Each problem `type` (`/problems/{slug}`) is a page that explains the error and what to do.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// Every problem type: its slug, status, title and what it means.
pub(crate) const PROBLEM_TYPES: &[(&str, u16, &str, &str)] = &[
    (
        "bad-parameter",
        400,
        "Bad parameter",
        "A query parameter (or a part of a JSON body, named by its path) is malformed or names something that does not exist; `parameter` names it and `detail` says what was expected.",
    ),
    (
        "malformed-body",
        400,
        "Malformed request body",
        "The body could not be read in its declared format (not JSON, a truncated Arrow stream, a file that is not Parquet, a bad gzip stream). Nothing was written.",
    ),
    (
        "bad-request",
        400,
        "Bad request",
        "The request could not be read (a malformed path segment, header or body framing); `detail` says what.",
    ),
    (
        "http-error",
        400,
        "HTTP error",
        "The HTTP layer refused the request before it reached the API; the status and `detail` say why.",
    ),
    (
        "unauthenticated",
        401,
        "Unauthorized",
        "The server requires a credential: send `Authorization: Bearer <API key or JWT>`.",
    ),
    (
        "bad-credential",
        401,
        "Unauthorized",
        "The credential sent is unknown, revoked, expired or badly signed, or the Authorization header is not `Bearer <token>`.",
    ),
    (
        "forbidden",
        403,
        "Forbidden",
        "The credential is valid but holds no grant of the permission (`permission`) on the dataset (`dataset`). Ask for a key with that grant.",
    ),
    (
        "outside-row-rule",
        403,
        "Outside the row rule",
        "The credential's row rule (`rule`) does not cover a record written, or the new values of an update; or the credential may not upsert or merge. Nothing was written.",
    ),
    (
        "row-rule-broken",
        403,
        "Row rule does not apply",
        "The credential's row rule names a field the dataset does not have; fix the grant.",
    ),
    (
        "unknown-dataset",
        404,
        "Unknown dataset",
        "No dataset has this name; `GET /v1/datasets` lists them.",
    ),
    (
        "record-not-found",
        404,
        "Record not found",
        "No record has this key (or it is outside the credential's row rule).",
    ),
    (
        "no-route",
        404,
        "No such endpoint",
        "The path is not an endpoint of the API; see `/docs`.",
    ),
    (
        "no-metrics",
        404,
        "No metrics",
        "This server records no metrics.",
    ),
    (
        "method-not-allowed",
        405,
        "Method not allowed",
        "The endpoint exists but does not take this method; `Allow` lists those it takes.",
    ),
    (
        "not-acceptable",
        406,
        "Not acceptable",
        "No answer format the `Accept` header allows is offered; use JSON, NDJSON, CSV, Arrow or Parquet, or `?format=`.",
    ),
    (
        "body-stalled",
        408,
        "Request body stalled",
        "The client stopped sending the body for longer than `server.stalled_client_ms`. Nothing was written.",
    ),
    (
        "key-conflict",
        409,
        "Key conflict",
        "Records carry keys already stored or repeated in the request (`keys`); nothing was written. Use `on_conflict=ignore`, `upsert` or `merge` to settle them.",
    ),
    (
        "body-too-large",
        413,
        "Request body too large",
        "The body is larger than the endpoint's limit (`setting` names it).",
    ),
    (
        "uri-too-long",
        414,
        "Request target too long",
        "The path and query exceed 32 KiB; send large filters in a `POST .../query` body.",
    ),
    (
        "unsupported-media-type",
        415,
        "Unsupported media type",
        "The body's `Content-Type` (or `Content-Encoding`) is missing or not one the endpoint reads (`supported` lists them).",
    ),
    (
        "unknown-host",
        421,
        "Misdirected request",
        "The `Host` header names a host this server does not answer to (`server.allowed_hosts`).",
    ),
    (
        "validation",
        422,
        "Validation failed",
        "Records break the schema; `errors` lists each by row, field and code (up to 100, `total_errors` counts all). Nothing was written unless `on_error=skip`.",
    ),
    (
        "too-many-affected",
        409,
        "Too many records",
        "The change would touch more records than `max_affected`; nothing was changed.",
    ),
    (
        "rate-limited",
        429,
        "Too many requests",
        "The credential sent more requests per second than `auth.requests_per_second`; retry after `Retry-After` seconds.",
    ),
    (
        "too-many-exports",
        429,
        "Too many exports",
        "The client or credential has as many streamed exports open as allowed (`setting`); finish one and retry. A client's limit answers 503, a credential's 429.",
    ),
    (
        "internal",
        500,
        "Internal error",
        "The server failed; its log has the cause. Please report it.",
    ),
    (
        "unavailable",
        503,
        "Service unavailable",
        "The server is busy (write queue full, every read connection busy) or shutting down; retry after `Retry-After`.",
    ),
    (
        "too-many-uploads",
        503,
        "Too many uploads",
        "As many uploads as `server.max_streamed_uploads` are being decoded; retry after `Retry-After`.",
    ),
    (
        "not-ready",
        503,
        "Not ready",
        "The database does not answer, its file is gone, or the writer has stopped (`reason`).",
    ),
    (
        "query-timeout",
        504,
        "Query timed out",
        "The read ran longer than `database.query_timeout_ms` before answering; narrow it or raise the setting.",
    ),
    (
        "storage-full",
        507,
        "Insufficient storage",
        "The disk holding `path` is full; nothing was written. Writes resume when space is freed.",
    ),
];

/// `GET /problems`: every type, one section each.
pub async fn index() -> Response {
    page(PROBLEM_TYPES)
}

/// `GET /problems/{slug}`.
pub async fn one(Path(slug): Path<String>) -> Result<Response, Problem> {
    match PROBLEM_TYPES.iter().find(|(s, ..)| *s == slug) {
        Some(found) => Ok(page(std::slice::from_ref(found))),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "No such problem type",
            format!("`{slug}` is not a problem type; `/problems` lists them"),
        )),
    }
}

fn page(types: &[(&str, u16, &str, &str)]) -> Response {
    let sections: String = types
        .iter()
        .map(|(slug, status, title, text)| {
            format!("<section id=\"{slug}\"><h2>{status} {title} <code>/problems/{slug}</code></h2><p>{}</p></section>\n", escape(text))
        })
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dataforge problem types</title></head><body><h1>dataforge problem types</h1>\n{sections}<p><a href=\"/problems\">All problem types</a> · <a href=\"/docs\">API</a></p></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
