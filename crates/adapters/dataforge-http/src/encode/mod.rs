//! Answer bodies: the paged JSON shape, and streamed answers in any format the table can write.
//! A streamed answer is encoded on a blocking thread by the format's encoder into chunks sent
//! through a small bounded channel to the response body: memory stays flat whatever the row count,
//! and a client that hangs up closes the channel, which stops the encoder and with it the query.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use dataforge_app::read::{Page, Rows};
use dataforge_domain::ports::BatchStream;
use dataforge_formats::table::Format;
use dataforge_formats::{AnswerColumns, EncodeError, JsonRows};
use serde_json::json;
use tokio::sync::mpsc;

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

/// Chunks of a streamed body, as they are sent (text encoders hand over a few hundred rows at a
/// time, so a chunk is about this size, not a whole 64Ki-row batch's text).
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks that may wait for the client.
const CHUNKS_AHEAD: usize = 4;

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

/// Why a stream ended early.
enum Stopped {
    /// The client hung up: nothing to report.
    ClientGone,
    /// The client stopped reading for longer than allowed.
    Stalled,
    Failed(String),
}

impl From<EncodeError> for Stopped {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Io(io) => match io.kind() {
                io::ErrorKind::BrokenPipe => Stopped::ClientGone,
                io::ErrorKind::TimedOut => Stopped::Stalled,
                _ => Stopped::Failed(io.to_string()),
            },
            EncodeError::Failed(why) => Stopped::Failed(why),
        }
    }
}

/// Encodes every batch of an answer into `sink` with the format's encoder, then sends the rest.
fn encode(
    format: &Format,
    columns: &AnswerColumns,
    batches: BatchStream,
    sink: &mut ChunkSink,
) -> Result<(), Stopped> {
    let Some(encode) = format.encode else {
        return Err(Stopped::Failed(format!("cannot write {}", format.name)));
    };
    let mut batches = batches.map(|batch| batch.map_err(|e| e.to_string()));
    encode(columns, &mut batches, sink)?;
    sink.send().map_err(EncodeError::Io)?;
    Ok(())
}

/// The body of a streamed answer. Encoding runs on a blocking thread; a failure after the answer
/// has begun can only cut the body short, which the client sees as an incomplete response.
pub(crate) fn stream_body(
    format: &'static Format,
    columns: AnswerColumns,
    batches: BatchStream,
    stall: Duration,
) -> Body {
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
        match encode(format, &columns, batches, &mut sink) {
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
    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{Field, Schema};
    use dataforge_domain::ports::StoreError;
    use dataforge_domain::query::OutputColumn;
    use dataforge_domain::value::FieldType;
    use http_body_util::BodyExt;

    use super::*;

    /// An export of `rows` integers in batches of 1,000, then a storage failure.
    fn failing_export(rows: i64) -> (AnswerColumns, BatchStream) {
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
        (AnswerColumns::new(columns, None), BatchStream::new(batches))
    }

    /// A failure after the answer began ends the body in an error, even when the chunks ahead of
    /// it filled the queue (the client must not take a cut export for a whole one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_failing_midway_ends_its_body_in_an_error() {
        // about 1.2 MB of CSV: the queue's four chunks fill, and the failure comes while the fifth
        // is being written, before the client reads anything
        let (columns, batches) = failing_export(180_000);
        let csv = dataforge_formats::table::by_name("csv").unwrap();
        let body = stream_body(csv, columns, batches, Duration::from_secs(30));
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
