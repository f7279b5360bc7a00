//! Answer encodings: the paged JSON shape, and streamed NDJSON, CSV, Arrow IPC and Parquet.
//! A streamed answer is encoded on a blocking thread, batch by batch, into chunks sent through a
//! small bounded channel to the response body: memory stays flat whatever the row count, and a
//! client that hangs up closes the channel, which stops the encoder and with it the query.

mod cells;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use dataforge_app::read::{Export, Page, Rows};
use dataforge_domain::query::OutputColumn;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::json;
use tokio::sync::mpsc;

use std::str::FromStr;
use std::sync::LazyLock;

use mediatype::MediaType;

use crate::problem::Problem;
pub(crate) use cells::JsonRows;

/// The formats an answer can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerFormat {
    /// Paged: `{items, next_cursor}`.
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

/// Media types (first: the one answered with), `?format=` names and formats.
const FORMATS: &[(&str, &str, AnswerFormat)] = &[
    ("application/json", "json", AnswerFormat::Json),
    ("application/x-ndjson", "ndjson", AnswerFormat::Ndjson),
    ("application/ndjson", "ndjson", AnswerFormat::Ndjson),
    ("text/csv", "csv", AnswerFormat::Csv),
    (
        "application/vnd.apache.arrow.stream",
        "arrow",
        AnswerFormat::Arrow,
    ),
    (
        "application/vnd.apache.parquet",
        "parquet",
        AnswerFormat::Parquet,
    ),
];

/// The media types of [`FORMATS`], parsed once, in its order.
static OFFERED: LazyLock<Vec<MediaType<'static>>> = LazyLock::new(|| {
    FORMATS
        .iter()
        .filter_map(|(m, _, _)| MediaType::parse(m).ok())
        .collect()
});

impl AnswerFormat {
    pub(crate) fn media_type(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(_, _, f)| *f == self)
            .map(|(m, _, _)| *m)
            .unwrap_or("application/json")
    }

    /// The format asked for: `?format=` if given (and taken out of `params`), else `Accept`.
    pub(crate) fn negotiate(
        headers: &HeaderMap,
        params: &mut Vec<(String, String)>,
    ) -> Result<AnswerFormat, Problem> {
        if let Some(i) = params.iter().position(|(name, _)| name == "format") {
            let (_, name) = params.remove(i);
            if params.iter().any(|(n, _)| n == "format") {
                return Err(Problem::bad_request("format", "given more than once"));
            }
            return FORMATS
                .iter()
                .find(|(_, n, _)| *n == name)
                .map(|(_, _, f)| *f)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "format",
                        format!(
                            "unknown format `{name}`; formats: json, ndjson, csv, arrow, parquet"
                        ),
                    )
                });
        }
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Ok(AnswerFormat::Json);
        };
        let accept = accept.to_str().unwrap_or_default();
        let ranges = headers_accept::Accept::from_str(accept).map_err(|e| {
            Problem::bad_request(
                "Accept",
                format!("the Accept header `{accept}` is not a list of media ranges: {e}"),
            )
        })?;
        if ranges.media_types().next().is_none() {
            return Ok(AnswerFormat::Json);
        }
        // RFC 9110: q values, the most specific range first; among equals the client's order,
        // then ours (JSON first, so `*/*` and `application/*` get JSON)
        let offered = &*OFFERED;
        if let Some(chosen) = ranges.negotiate(offered.iter()) {
            let at = offered.iter().position(|m| m == chosen).unwrap_or(0);
            return Ok(FORMATS[at].2);
        }
        let supported: Vec<&str> = FORMATS.iter().map(|(m, _, _)| *m).collect();
        Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-acceptable",
            "Not acceptable",
            format!(
                "cannot answer as `{accept}`; supported: {} (or ?format=json|ndjson|csv|arrow|parquet)",
                supported.join(", ")
            ),
        )
        .with("supported", json!(supported)))
    }
}

/// Writes rows as a JSON array into `out`.
pub(crate) fn rows_json(rows: &Rows, out: &mut Vec<u8>) {
    out.push(b'[');
    let mut first = true;
    for batch in &rows.batches {
        let writer = JsonRows::new(&rows.columns, batch);
        for row in 0..batch.num_rows() {
            if !first {
                out.push(b',');
            }
            first = false;
            writer.write(row, out);
        }
    }
    out.push(b']');
}

/// The paged JSON answer: `{"items": [...], "next_cursor": ...}` for records, and
/// `{"items": [...], "truncated": bool}` for groups.
pub(crate) fn page_json(page: &Page) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(br#"{"items":"#);
    rows_json(&page.rows, &mut out);
    if page.aggregate {
        out.extend_from_slice(format!(r#","truncated":{}}}"#, page.more).as_bytes());
    } else {
        out.extend_from_slice(br#","next_cursor":"#);
        out.extend_from_slice(json!(page.next_cursor).to_string().as_bytes());
        out.push(b'}');
    }
    out
}

/// Chunks of a streamed body, as they are sent.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks that may wait for the client.
const CHUNKS_AHEAD: usize = 4;
/// Rows of a batch encoded as CSV before the chunk is checked for fullness: text formats send
/// chunks of about [`CHUNK_BYTES`], not a whole 64Ki-row batch's text (tens of MiB, four of which
/// could wait for a slow client).
const TEXT_SLICE_ROWS: usize = 512;

/// A `Write` that hands full chunks to the response body; fails once the client has gone.
struct ChunkSink {
    buffer: Vec<u8>,
    body: mpsc::Sender<Result<Bytes, io::Error>>,
    /// How long a chunk may wait for the client to read, at most.
    stall: Duration,
    runtime: tokio::runtime::Handle,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        // a client that stops reading would otherwise hold the read (and its database
        // connection) for as long as it keeps the socket open
        match self
            .runtime
            .block_on(tokio::time::timeout(self.stall, self.body.send(Ok(chunk))))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client hung up",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }

    /// Sends when a chunk is full.
    fn maybe_send(&mut self) -> io::Result<()> {
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        self.maybe_send()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The Arrow schema of an answer: its columns, all nullable.
fn arrow_schema(columns: &[OutputColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.field_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// A batch under the answer's own schema (names and types as declared), casting a column only
/// where storage handed back another type.
fn conform(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, String> {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                arrow_cast::cast(column, field.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// Why a stream ended early.
enum Stopped {
    /// The client hung up: nothing to report.
    ClientGone,
    /// The client stopped reading for longer than allowed.
    Stalled,
    Failed(String),
}

impl From<io::Error> for Stopped {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::BrokenPipe => Stopped::ClientGone,
            io::ErrorKind::TimedOut => Stopped::Stalled,
            _ => Stopped::Failed(e.to_string()),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Stopped {
    Stopped::Failed(e.to_string())
}

/// Encodes every batch of `export` into `sink`.
fn encode(format: AnswerFormat, export: Export, sink: &mut ChunkSink) -> Result<(), Stopped> {
    let Export { columns, batches } = export;
    match format {
        AnswerFormat::Json | AnswerFormat::Ndjson => {
            for batch in batches {
                let batch = batch.map_err(failed)?;
                let rows = JsonRows::new(&columns, &batch);
                for row in 0..batch.num_rows() {
                    rows.write(row, &mut sink.buffer);
                    sink.buffer.push(b'\n');
                    sink.maybe_send()?;
                }
            }
        }
        AnswerFormat::Csv => {
            cells::csv_header(&columns, &mut sink.buffer);
            for batch in batches {
                let batch = batch.map_err(failed)?;
                for start in (0..batch.num_rows()).step_by(TEXT_SLICE_ROWS) {
                    let rows = TEXT_SLICE_ROWS.min(batch.num_rows() - start);
                    cells::csv_rows(&columns, &batch.slice(start, rows), &mut sink.buffer);
                    sink.maybe_send()?;
                }
            }
        }
        AnswerFormat::Arrow => {
            let schema = arrow_schema(&columns);
            let mut writer =
                arrow_ipc::writer::StreamWriter::try_new(&mut *sink, &schema).map_err(failed)?;
            for batch in batches {
                let batch = conform(&schema, &batch.map_err(failed)?).map_err(failed)?;
                writer.write(&batch).map_err(ipc_stopped)?;
            }
            writer.finish().map_err(ipc_stopped)?;
        }
        AnswerFormat::Parquet => {
            let schema = arrow_schema(&columns);
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(128 * 1024))
                .build();
            let mut writer =
                ArrowWriter::try_new(&mut *sink, Arc::clone(&schema), Some(properties))
                    .map_err(failed)?;
            for batch in batches {
                let batch = conform(&schema, &batch.map_err(failed)?).map_err(failed)?;
                writer.write(&batch).map_err(parquet_stopped)?;
            }
            writer.close().map_err(parquet_stopped)?;
        }
    }
    sink.send()?;
    Ok(())
}

fn ipc_stopped(e: arrow_schema::ArrowError) -> Stopped {
    match e {
        arrow_schema::ArrowError::IoError(_, io) => io.into(),
        other => failed(other),
    }
}

fn parquet_stopped(e: parquet::errors::ParquetError) -> Stopped {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => (*io).into(),
            Err(other) => failed(other),
        },
        other => failed(other),
    }
}

/// The body of a streamed answer. Encoding runs on a blocking thread; a failure after the answer
/// has begun can only cut the body short, which the client sees as an incomplete response.
pub(crate) fn stream_body(format: AnswerFormat, export: Export, stall: Duration) -> Body {
    let (body, chunks) = mpsc::channel(CHUNKS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    // set on a failure: the body then ends in an error after the chunks already queued, however
    // full the queue was (an error sent into a full queue was lost, and the body ended as if whole)
    let failed = Arc::new(AtomicBool::new(false));
    let failing = Arc::clone(&failed);
    tokio::task::spawn_blocking(move || {
        let mut sink = ChunkSink {
            buffer: Vec::with_capacity(CHUNK_BYTES),
            body,
            stall,
            runtime,
        };
        match encode(format, export, &mut sink) {
            Ok(()) => {}
            Err(Stopped::ClientGone) => tracing::debug!("the client hung up during an export"),
            Err(Stopped::Stalled) => {
                tracing::info!(
                    stalled_ms = stall.as_millis() as u64,
                    "a client stopped reading an export; it was ended and its read freed"
                );
                // should the client read on, it finds the answer cut short, not complete
                failing.store(true, Ordering::Release);
            }
            Err(Stopped::Failed(why)) => {
                tracing::error!(error = %why, "an export failed after it had begun");
                failing.store(true, Ordering::Release);
            }
        }
    });
    // fused: a layer above (compression) may poll once more after the end, which unfold forbids
    Body::from_stream(futures_util::StreamExt::fuse(futures_util::stream::unfold(
        (chunks, failed),
        |(mut chunks, failed)| async move {
            match chunks.recv().await {
                Some(chunk) => Some((chunk, (chunks, failed))),
                // hyper then ends the connection without the last chunk: the client sees the
                // answer is incomplete
                None if failed.swap(false, Ordering::AcqRel) => {
                    let cut = io::Error::other(
                        "the export failed after it had begun; see the server log",
                    );
                    Some((Err(cut), (chunks, failed)))
                }
                None => None,
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use arrow_array::{ArrayRef, Int64Array};
    use dataforge_domain::ports::{BatchStream, StoreError};
    use dataforge_domain::value::FieldType;
    use http_body_util::BodyExt;

    use super::*;

    fn negotiated(accept: &str) -> Result<AnswerFormat, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, accept.parse().unwrap());
        AnswerFormat::negotiate(&headers, &mut Vec::new()).map_err(|p| p.status().as_u16())
    }

    #[test]
    fn accept_follows_rfc_9110() {
        use AnswerFormat::*;
        for (accept, expected) in [
            ("text/csv", Ok(Csv)),
            ("*/*", Ok(Json)),
            ("application/*", Ok(Json)),
            ("text/*", Ok(Csv)),
            ("text/csv;q=0.5, application/x-ndjson", Ok(Ndjson)),
            (
                "application/vnd.apache.parquet;q=0.9, text/csv;q=0.1",
                Ok(Parquet),
            ),
            // a more specific range overrides a wildcard, q=0 refuses
            ("*/*;q=0.1, text/csv;q=0", Ok(Json)),
            ("text/*, text/csv;q=0", Err(406)),
            ("image/png", Err(406)),
            ("text/csv;;q==", Err(400)),
        ] {
            assert_eq!(negotiated(accept), expected, "{accept}");
        }
    }

    /// An export of `rows` integers in batches of 1,000, then a storage failure.
    fn failing_export(rows: i64) -> Export {
        let columns: Arc<[OutputColumn]> = Arc::from(vec![OutputColumn {
            name: "n".into(),
            field_type: FieldType::Integer,
        }]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "n",
            arrow_schema::DataType::Int64,
            true,
        )]));
        let batches = (0..rows / 1000)
            .map(move |b| {
                let values: ArrayRef =
                    Arc::new(Int64Array::from_iter_values(b * 1000..(b + 1) * 1000));
                Ok(RecordBatch::try_new(Arc::clone(&schema), vec![values]).unwrap())
            })
            .chain(std::iter::once(Err(StoreError::Internal(
                "disk gone".into(),
            ))));
        Export {
            columns,
            batches: BatchStream::new(batches),
        }
    }

    /// A failure after the answer began ends the body in an error, even when the chunks ahead of
    /// it filled the queue (the client must not take a cut export for a whole one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_failing_midway_ends_its_body_in_an_error() {
        // about 1.2 MB of CSV: the queue's four chunks fill, and the failure comes while the fifth
        // is being written, before the client reads anything
        let body = stream_body(
            AnswerFormat::Csv,
            failing_export(180_000),
            Duration::from_secs(30),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut body = body;
        let mut bytes = 0;
        let ended = loop {
            match body.frame().await {
                Some(Ok(frame)) => bytes += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(e)) => break Err(e.to_string()),
                None => break Ok(()),
            }
        };
        assert!(bytes > CHUNKS_AHEAD * CHUNK_BYTES, "{bytes}");
        let why = ended.expect_err("the body ended as if whole");
        assert!(why.contains("failed after it had begun"), "{why}");
    }
}
