//! Route handlers: turn HTTP requests into use-case calls and their results into answers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dataforge_app::change::Replaced;
use dataforge_app::ingest::INLINE_BODY_BYTES;
use dataforge_app::read::{ReadRequest, Rows};
use dataforge_app::{App, AppError};
use dataforge_domain::access::{Denied, Permission};
use dataforge_domain::records::{BodyFormat, ReadOptions};
use dataforge_domain::write::parse_write_params;
use serde_json::{Value as Json, json};

use dataforge_formats::table::{self, Format, read_options};
use dataforge_formats::{AnswerColumns, JsonRows};

use crate::auth::Acting;
use crate::body;
use crate::encode;
use crate::exports::{Client, ExportSlots};
use crate::negotiate::{answer_format, body_format, is_page};
use crate::problem::{Problem, from_app_error};
use crate::strict_json;
use crate::views;
use futures_util::StreamExt;

/// Shared state of the routes.
#[derive(Clone)]
pub struct HttpState {
    pub app: App,
    /// Streamed exports open per client.
    pub exports: ExportSlots<std::net::IpAddr>,
    /// Streamed exports open per credential.
    pub credential_exports: ExportSlots<String>,
    /// What `/metrics` shows, when metrics are recorded.
    pub metrics: Option<crate::operations::RenderMetrics>,
    /// The API description, built at start.
    pub contract: Arc<crate::openapi::Contract>,
    /// Places for streamed uploads being decoded (each holds a blocking thread while its body
    /// arrives): stalled uploads cannot take the threads reads need.
    pub uploads: Arc<tokio::sync::Semaphore>,
    pub max_body_bytes: usize,
    /// How long a client may stop sending a body or reading a streamed answer.
    pub stalled_client: std::time::Duration,
}

type Answer = Result<Response, Problem>;

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn problem(state: &HttpState, dataset: &str, error: AppError) -> Problem {
    from_app_error(error, state.app.catalog().get(dataset).map(|d| d.as_ref()))
}

/// Query parameters as ordered pairs; repeated names are kept (several filters on one field).
fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn health() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

pub async fn list_datasets(Acting(state): Acting) -> Response {
    // a credential sees the datasets it holds some permission on
    let access = state.app.access();
    let datasets: Vec<Json> = state
        .app
        .catalog()
        .iter()
        .filter(|d| access.sees(&d.name))
        .map(|d| views::dataset(d, state.app.version(&d.name), access))
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "datasets": datasets }).to_string().into_bytes(),
    )
}

/// `GET /v1/credential`: who this request acts for, and what it may do.
pub async fn credential(Acting(state): Acting) -> Response {
    json_response(
        StatusCode::OK,
        views::credential(state.app.access())
            .to_string()
            .into_bytes(),
    )
}

pub async fn get_dataset(Acting(state): Acting, Path(dataset): Path<String>) -> Answer {
    let schema = state
        .app
        .dataset(&dataset)
        .map_err(|e| problem(&state, &dataset, e))?;
    if !state.app.access().sees(&dataset) {
        let denied = Denied::Permission {
            credential: state.app.access().name.clone(),
            dataset: dataset.clone(),
            permission: Permission::Read,
        };
        return Err(problem(&state, &dataset, denied.into()));
    }
    Ok(json_response(
        StatusCode::OK,
        views::dataset(&schema, state.app.version(&schema.name), state.app.access())
            .to_string()
            .into_bytes(),
    ))
}

/// A write's query parameters: its own (`on_conflict`, `on_error`), and the read options of the
/// formats table (`delimiter`, `null`), which the body's format checks.
type WriteParams = (Vec<(String, String)>, Vec<(String, String)>);

fn split_write_params(params: Vec<(String, String)>) -> WriteParams {
    params
        .into_iter()
        .partition(|(name, _)| !table::is_read_option(name))
}

/// How a body in `format` is read, from the read options given (before a byte of it is read).
fn body_read_options(format: &Format, given: &[(String, String)]) -> Result<ReadOptions, Problem> {
    read_options(format, given).map_err(|e| Problem::bad_request(&e.parameter, e.message))
}

pub async fn insert_records(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!(
                "the request body exceeds the limit of {} bytes; split it into smaller requests",
                state.max_body_bytes
            ),
        )
        .with("limit_bytes", json!(state.max_body_bytes))
    };
    let checked = (|| {
        let (own, read) = split_write_params(query_pairs(query));
        let options = parse_write_params(&own).map_err(|e| problem(&state, &dataset, e.into()))?;
        state
            .app
            .dataset(&dataset)
            .map_err(|e| problem(&state, &dataset, e))?;
        let format = body_format(&headers)?;
        let read = body_read_options(format, &read)?;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > state.max_body_bytes as u64) {
            return Err(too_large());
        }
        Ok((options, (format.id(), read), declared))
    })();
    let (options, (format, read), declared) = match checked {
        Ok(checked) => checked,
        Err(problem) => {
            body::discard(body).await;
            return Err(problem);
        }
    };
    let stalled = || {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-stalled",
            "Request body stalled",
            format!(
                "no byte of the request body arrived for {} ms; nothing was written",
                state.stalled_client.as_millis()
            ),
        )
    };
    // a small body (most single-record writes) is read whole and decoded on this task; one of
    // unknown length (chunked, compressed) may be small too: it is read that far to see
    let incoming = match declared {
        Some(length) if length > INLINE_BODY_BYTES as u64 => body::Incoming::Body(body),
        _ => match body::small_or_rest(body, INLINE_BODY_BYTES, state.stalled_client).await {
            Ok(incoming) => incoming,
            Err(body::SmallBodyError::Stalled) => return Err(stalled()),
            Err(body::SmallBodyError::Unreadable(why)) => {
                let e = AppError::MalformedBody(format!("the body could not be read: {why}"));
                return Err(problem(&state, &dataset, e));
            }
        },
    };
    let summary = match incoming {
        body::Incoming::Whole(whole) => {
            if whole.len() > state.max_body_bytes {
                return Err(too_large());
            }
            state
                .app
                .ingest_small(&dataset, format, &read, &whole, options)
                .await
        }
        body::Incoming::Body(body) => {
            let place = tokio::time::timeout(
                state.stalled_client,
                Arc::clone(&state.uploads).acquire_owned(),
            )
            .await;
            let Ok(Ok(_place)) = place else {
                body::discard(body).await;
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-uploads",
                    "Too many uploads",
                    format!(
                        "every place for a streamed upload stayed taken for {} ms (server.max_streamed_uploads); retry shortly",
                        state.stalled_client.as_millis()
                    ),
                )
                .with("setting", json!("server.max_streamed_uploads")));
            };
            let (reader, cut) = body::stream(body, state.max_body_bytes, state.stalled_client);
            let ingested = state
                .app
                .ingest(&dataset, format, read, reader, options)
                .await;
            if cut.too_large() {
                return Err(too_large());
            }
            if cut.stalled() {
                return Err(stalled());
            }
            ingested
        }
    };
    let summary = summary.map_err(|e| problem(&state, &dataset, e))?;
    let outcome = summary.outcome;
    let mut answer = json!({
        "inserted": outcome.inserted,
        "updated": outcome.updated,
        "skipped": outcome.skipped,
        "rejected": summary.rejected,
    });
    if summary.rejected > 0 {
        answer["errors"] = json!(summary.violations);
        answer["total_errors"] = json!(summary.total_errors);
    }
    Ok(json_response(
        StatusCode::CREATED,
        answer.to_string().into_bytes(),
    ))
}

/// Answers a read: a JSON page, or the whole answer streamed in another format.
async fn read(
    state: &HttpState,
    client: Client,
    dataset: &str,
    request: ReadRequest<'_>,
    format: &'static Format,
) -> Answer {
    let failed = |e| problem(state, dataset, e);
    if is_page(format) {
        let page = state
            .app
            .read_page(dataset, request)
            .await
            .map_err(failed)?;
        return Ok(json_response(StatusCode::OK, encode::page_json(&page)));
    }
    let slot = state.exports.take(client.0)?;
    let credential = state.app.access().name.clone();
    let credential_slot = state.credential_exports.take(credential)?;
    let export = state
        .app
        .read_export(dataset, request)
        .await
        .map_err(failed)?;
    // the dataset says which columns never hold null, for the schema of binary formats
    let schema = state.app.catalog().get(dataset).cloned();
    let columns = AnswerColumns::new(export.columns, schema.as_deref());
    let body = encode::stream_body(format, columns, export.batches, state.stalled_client);
    // the client's place is given back when the body ends or is dropped
    let body = axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = (&slot, &credential_slot);
        chunk
    }));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    Ok(response)
}

/// Answers a read given as query parameters (filters and the read's own parameters).
async fn read_params(
    state: &HttpState,
    client: Client,
    dataset: &str,
    query: Option<String>,
    headers: &HeaderMap,
    request: for<'a> fn(&'a [(String, String)]) -> ReadRequest<'a>,
) -> Answer {
    let mut params = query_pairs(query);
    let format = answer_format(headers, &mut params)?;
    read(state, client, dataset, request(&params), format).await
}

pub async fn list_records(
    Acting(state): Acting,
    client: Client,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    read_params(&state, client, &dataset, query, &headers, |p| {
        ReadRequest::Records(p)
    })
    .await
}

pub async fn aggregate(
    Acting(state): Acting,
    client: Client,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    read_params(&state, client, &dataset, query, &headers, |p| {
        ReadRequest::Aggregate(p)
    })
    .await
}

/// `POST .../query`: the query language (a JSON body), answered like a listing or an aggregate.
pub async fn query(
    Acting(state): Acting,
    client: Client,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut params = query_pairs(query);
    let format = answer_format(&headers, &mut params)?;
    if let Some((name, _)) = params.first() {
        return Err(Problem::bad_request(
            name,
            "a query takes its parts in the body; only `format` may be a query parameter",
        ));
    }
    json_content(&headers)?;
    let body: Json = strict_json::parse(&body)
        .map_err(|e| Problem::bad_request("body", format!("the body is not valid JSON: {e}")))?;
    read(&state, client, &dataset, ReadRequest::Body(&body), format).await
}

pub async fn count_records(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let count = state
        .app
        .count_records(&dataset, &query_pairs(query))
        .await
        .map_err(|e| problem(&state, &dataset, e))?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "count": count.rows, "exact": count.exact })
            .to_string()
            .into_bytes(),
    ))
}

/// The dataset and key segments of `.../records/{k1}/{k2}/...`, split from the raw path and
/// decoded one by one, so a key value may contain an encoded `/` (`%2F`). Read here rather than by
/// axum's `Path`, whose refusal of a segment that is not UTF-8 is plain text, not a problem.
struct RecordPath {
    dataset: String,
    key: Vec<String>,
}

impl RecordPath {
    fn of(uri: &Uri) -> Result<RecordPath, Problem> {
        // /v1/datasets/{dataset}/records/{key...}: the dataset is the fourth segment, the key
        // starts at the sixth
        let decoded: Vec<String> = uri
            .path()
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
            })
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Problem::bad_request(
                    "key",
                    "a path segment is not valid UTF-8 after percent-decoding",
                )
            })?;
        let dataset = decoded.get(3).cloned().unwrap_or_default();
        let key = decoded.into_iter().skip(5).collect();
        Ok(RecordPath { dataset, key })
    }

    fn key(&self) -> Vec<&str> {
        self.key.iter().map(String::as_str).collect()
    }
}

/// One record as a JSON object.
fn record_response(status: StatusCode, rows: &Rows) -> Response {
    let mut out = Vec::with_capacity(512);
    if let Some(batch) = rows.batches.first() {
        JsonRows::new(&rows.columns, batch).write(0, &mut out);
    }
    json_response(status, out)
}

/// `GET .../records/{k1}/{k2}/...`.
pub async fn get_record(Acting(state): Acting, uri: Uri) -> Answer {
    let path = RecordPath::of(&uri)?;
    let (dataset, segments) = (&path.dataset, path.key());
    let rows = state
        .app
        .get_record(dataset, &segments)
        .await
        .map_err(|e| problem(&state, dataset, e))?;
    Ok(record_response(StatusCode::OK, &rows))
}

/// Refuses a body whose `Content-Type` is not JSON (or missing: see [`body_format`]).
fn json_content(headers: &HeaderMap) -> Result<(), Problem> {
    match body_format(headers) {
        Ok(format) if format.id() == BodyFormat::JSON => Ok(()),
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "this request takes a JSON body (Content-Type: application/json)",
        )
        .with("supported", json!(["application/json"]))),
    }
}

/// A change's JSON body: the `Content-Type` must be JSON, the body valid JSON.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Json, Problem> {
    json_content(headers)?;
    strict_json::parse(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "Malformed request body",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// `PATCH .../records/{k1}/...`: updates the fields the body names; answers the stored record.
pub async fn patch_record(
    Acting(state): Acting,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let path = RecordPath::of(&uri)?;
    let (dataset, segments) = (&path.dataset, path.key());
    let set = json_body(&headers, &body)?;
    let rows = state
        .app
        .update_record(dataset, &segments, &set)
        .await
        .map_err(|e| problem(&state, dataset, e))?;
    Ok(record_response(StatusCode::OK, &rows))
}

/// `PUT .../records/{k1}/...`: replaces the record (200) or creates it (201); answers it.
pub async fn put_record(
    Acting(state): Acting,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let path = RecordPath::of(&uri)?;
    let (dataset, segments) = (&path.dataset, path.key());
    let record = json_body(&headers, &body)?;
    let (replaced, rows) = state
        .app
        .replace_record(dataset, &segments, record)
        .await
        .map_err(|e| problem(&state, dataset, e))?;
    let status = match replaced {
        Replaced::Replaced => StatusCode::OK,
        Replaced::Created => StatusCode::CREATED,
    };
    Ok(record_response(status, &rows))
}

/// `DELETE .../records/{k1}/...`: 204, or 404 when no record has the key.
pub async fn delete_record(Acting(state): Acting, uri: Uri) -> Answer {
    let path = RecordPath::of(&uri)?;
    let (dataset, segments) = (&path.dataset, path.key());
    state
        .app
        .delete_record(dataset, &segments)
        .await
        .map_err(|e| problem(&state, dataset, e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn changed(verb: &str, n: u64) -> Response {
    json_response(StatusCode::OK, json!({ verb: n }).to_string().into_bytes())
}

/// `PATCH .../records?<filters>`: sets the body's fields in every record the filters select.
pub async fn update_where(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let set = json_body(&headers, &body)?;
    let n = state
        .app
        .change_where(&dataset, &query_pairs(query), Some(&set))
        .await
        .map_err(|e| problem(&state, &dataset, e))?;
    Ok(changed("updated", n))
}

/// `DELETE .../records?<filters>`: deletes every record the filters select.
pub async fn delete_where(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let n = state
        .app
        .change_where(&dataset, &query_pairs(query), None)
        .await
        .map_err(|e| problem(&state, &dataset, e))?;
    Ok(changed("deleted", n))
}

/// `POST .../update` and `POST .../delete`: a change with a JSON filter tree in the body.
async fn change_by_body(
    state: &HttpState,
    dataset: &str,
    headers: &HeaderMap,
    body: &[u8],
    update: bool,
) -> Answer {
    let body = json_body(headers, body)?;
    let n = state
        .app
        .change_by_body(dataset, &body, update)
        .await
        .map_err(|e| problem(state, dataset, e))?;
    Ok(changed(if update { "updated" } else { "deleted" }, n))
}

pub async fn update_by_body(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    change_by_body(&state, &dataset, &headers, &body, true).await
}

pub async fn delete_by_body(
    Acting(state): Acting,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    change_by_body(&state, &dataset, &headers, &body, false).await
}

pub async fn no_route(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "Not found",
        format!(
            "no endpoint at `{}`; see the README for the API",
            uri.path()
        ),
    )
}

pub async fn wrong_method() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not accept that method",
    )
}
