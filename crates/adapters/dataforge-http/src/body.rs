//! Request bodies as a blocking [`Read`]: an async task forwards the body's chunks through a small
//! bounded channel, so a decoder on a blocking thread reads an upload of any size as it arrives,
//! with backpressure, and never holds more than a few chunks.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

/// Chunks that may wait between the socket and the decoder.
const CHUNKS_IN_FLIGHT: usize = 8;

/// How much of a refused body is still read, so that the client, still sending, gets the answer
/// instead of a reset connection.
const DISCARD_BYTES: usize = 4 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// Reads and drops up to [`DISCARD_BYTES`] of a body that will not be used.
pub async fn discard(body: Body) {
    let mut body = body;
    let mut seen = 0usize;
    let drained = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drained).await;
}

/// A body read as far as `inline` bytes (one declared that small, or of unknown length: chunked,
/// or decoded from a `Content-Encoding`): whole when it ended within them, otherwise the body again, what was read put
/// back in front. `Err` says why reading failed: the client stalled for `stall`, or the body could
/// not be read.
pub async fn small_or_rest(
    body: Body,
    inline: usize,
    stall: Duration,
) -> Result<Incoming, SmallBodyError> {
    let mut body = body;
    let mut read: Vec<Bytes> = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = tokio::time::timeout(stall, body.frame())
            .await
            .map_err(|_| SmallBodyError::Stalled)?;
        let Some(frame) = frame else {
            // most small bodies come in one frame: no copy then
            return Ok(Incoming::Whole(match read.len() {
                1 => read.swap_remove(0),
                _ => read.concat().into(),
            }));
        };
        let frame = frame.map_err(|e| SmallBodyError::Unreadable(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            read.push(data);
        }
        if seen > inline {
            let prefix = futures_util::stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
            let rest = body.into_data_stream();
            return Ok(Incoming::Body(Body::from_stream(
                futures_util::StreamExt::chain(prefix, rest),
            )));
        }
    }
}

/// A request body: read whole already, or still to read.
pub enum Incoming {
    Whole(Bytes),
    Body(Body),
}

/// Why [`small_or_rest`] failed.
pub enum SmallBodyError {
    Stalled,
    Unreadable(String),
}

/// The reading end.
pub struct BodyReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Why a body was cut short, if it was (the reader then fails).
#[derive(Clone, Default)]
pub struct Cut(Arc<AtomicU8>);

const TOO_LARGE: u8 = 1;
const STALLED: u8 = 2;

impl Cut {
    /// The body went past the size limit.
    pub fn too_large(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TOO_LARGE
    }

    /// The client stopped sending it.
    pub fn stalled(&self) -> bool {
        self.0.load(Ordering::Relaxed) == STALLED
    }
}

/// Starts forwarding `body`, failing the reader once more than `limit` bytes arrived, or when
/// no byte arrived for `stall` (a client that stops sending would otherwise hold the decoder's
/// blocking thread for as long as it keeps the connection open).
pub fn stream(body: Body, limit: usize, stall: Duration) -> (BodyReader, Cut) {
    let (sender, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let cut = Cut::default();
    let flag = cut.clone();
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0usize;
        loop {
            let Ok(frame) = tokio::time::timeout(stall, body.frame()).await else {
                flag.0.store(STALLED, Ordering::Relaxed);
                let _ = sender
                    .send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped sending the body",
                    )))
                    .await;
                return;
            };
            let Some(frame) = frame else { break };
            let chunk = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers
                },
                Err(e) => {
                    let _ = sender
                        .send(Err(io::Error::other(format!(
                            "the body could not be read: {e}"
                        ))))
                        .await;
                    return;
                }
            };
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                flag.0.store(TOO_LARGE, Ordering::Relaxed);
                let _ = sender
                    .send(Err(io::Error::other("the body is larger than the limit")))
                    .await;
                return;
            }
            if sender.send(Ok(chunk)).await.is_err() {
                // the decoder stopped (a refused body): read a little more of it, so that a
                // client still sending gets the answer instead of a reset connection
                discard(body).await;
                return;
            }
        }
    });
    (
        BodyReader {
            chunks,
            current: Bytes::new(),
        },
        cut,
    )
}
