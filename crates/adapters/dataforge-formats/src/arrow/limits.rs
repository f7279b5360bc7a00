//! Bounds on what an Arrow IPC stream may make the server allocate. arrow-rs's stream reader
//! allocates each message's metadata and body in full from the lengths the stream declares, before
//! it reads them: eight bytes declaring 2 GiB of metadata made the server allocate 2 GiB to answer
//! `400`. This reader sits in front of it, passes the same bytes through, and holds back each
//! message's header and metadata until their declared lengths are known to be within bounds, so
//! an oversized claim is refused before anything is allocated for it.

use std::io::{self, Read};

/// Most metadata one message may declare (a schema of thousands of fields takes well under 1 MiB).
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024 * 1024;

/// Most body one record batch message may declare: larger batches are to be split (pyarrow:
/// `write_table(table, max_chunksize=...)`).
pub(crate) const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

const CONTINUATION: [u8; 4] = [0xff; 4];

/// What comes next in the stream.
enum Next {
    /// A message's length prefix.
    Header,
    /// Body bytes of the current message, passed through.
    Body(u64),
    /// After the end-of-stream marker (or a message that does not parse, which the Arrow reader
    /// reports): everything passes through.
    Rest,
}

/// An Arrow IPC stream, checked message by message (see the module's documentation).
pub(crate) struct BoundedIpc<R> {
    inner: R,
    next: Next,
    /// Header and metadata checked and waiting to be handed on, and how much of it was.
    held: Vec<u8>,
    handed: usize,
}

impl<R: Read> BoundedIpc<R> {
    pub(crate) fn new(inner: R) -> Self {
        BoundedIpc {
            inner,
            next: Next::Header,
            held: Vec::new(),
            handed: 0,
        }
    }

    /// Reads and checks the next message's prefix and metadata into `held`.
    fn hold_message(&mut self) -> io::Result<()> {
        self.held.clear();
        self.handed = 0;
        if !self.hold(4)? {
            self.next = Next::Rest;
            return Ok(());
        }
        if self.held[..4] == CONTINUATION && !self.hold(4)? {
            self.next = Next::Rest;
            return Ok(());
        }
        let at = self.held.len() - 4;
        let declared = i32::from_le_bytes([
            self.held[at],
            self.held[at + 1],
            self.held[at + 2],
            self.held[at + 3],
        ]);
        if declared == 0 {
            self.next = Next::Rest; // end of stream
            return Ok(());
        }
        let metadata = usize::try_from(declared).unwrap_or(usize::MAX);
        if metadata > MAX_METADATA_BYTES {
            let hint = if self.held.starts_with(b"ARRO") {
                "; this looks like an Arrow IPC file: send an Arrow IPC stream instead"
            } else {
                ""
            };
            return Err(refused(format!(
                "a message declares {declared} bytes of metadata, more than the {MAX_METADATA_BYTES} allowed{hint}"
            )));
        }
        let start = self.held.len();
        if !self.hold(metadata)? {
            self.next = Next::Rest; // cut short: the Arrow reader says so
            return Ok(());
        }
        self.next = match arrow_ipc::root_as_message(&self.held[start..]) {
            Ok(message) => {
                let body = message.bodyLength();
                if u64::try_from(body).map_or(true, |b| b > MAX_BODY_BYTES) {
                    return Err(refused(format!(
                        "a message declares a body of {body} bytes, more than the {MAX_BODY_BYTES} allowed; split the stream into smaller record batches"
                    )));
                }
                Next::Body(body as u64)
            }
            Err(_) => Next::Rest,
        };
        Ok(())
    }

    /// Appends up to `n` more bytes of the stream to `held`; false if it ended first.
    fn hold(&mut self, n: usize) -> io::Result<bool> {
        let start = self.held.len();
        self.held.resize(start + n, 0);
        let mut filled = 0;
        while filled < n {
            match self.inner.read(&mut self.held[start + filled..]) {
                Ok(0) => {
                    self.held.truncate(start + filled);
                    return Ok(false);
                }
                Ok(read) => filled += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.held.truncate(start + filled);
                    return Err(e);
                }
            }
        }
        Ok(true)
    }
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> Read for BoundedIpc<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.handed < self.held.len() {
                let n = out.len().min(self.held.len() - self.handed);
                out[..n].copy_from_slice(&self.held[self.handed..self.handed + n]);
                self.handed += n;
                return Ok(n);
            }
            match self.next {
                Next::Rest => return self.inner.read(out),
                Next::Body(0) => self.hold_message()?,
                Next::Body(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut out[..want])?;
                    self.next = if n == 0 {
                        Next::Rest
                    } else {
                        Next::Body(left - n as u64)
                    };
                    return Ok(n);
                }
                Next::Header => self.hold_message()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn stream(batches: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
        for _ in 0..batches {
            writer.write(&batch).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);
        out
    }

    fn read_all(bytes: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut reader = BoundedIpc::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn a_stream_passes_through_unchanged_whatever_the_reads() {
        let bytes = stream(3);
        for chunk in [1, 7, 4096] {
            assert_eq!(read_all(&bytes, chunk).unwrap(), bytes, "reads of {chunk}");
        }
        let reader =
            arrow_ipc::reader::StreamReader::try_new(BoundedIpc::new(&bytes[..]), None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 3000);
    }

    #[test]
    fn declared_lengths_past_the_bounds_are_refused_before_reading_on() {
        let bomb = b"\xff\xff\xff\xff\xff\xff\xff\x7f";
        let e = read_all(bomb, 64).unwrap_err();
        assert!(
            e.to_string().contains("2147483647 bytes of metadata"),
            "{e}"
        );
        let file = b"ARROW1\0\0\xff\xff\xff\xff";
        let e = read_all(file, 64).unwrap_err();
        assert!(e.to_string().contains("Arrow IPC file"), "{e}");
        // a record batch message declaring a body past the bound
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let mut message = arrow_ipc::MessageBuilder::new(&mut fbb);
        message.add_version(arrow_ipc::MetadataVersion::V5);
        message.add_bodyLength(1 << 40);
        let root = message.finish();
        fbb.finish(root, None);
        let metadata = fbb.finished_data();
        let mut huge = CONTINUATION.to_vec();
        huge.extend_from_slice(&(metadata.len() as i32).to_le_bytes());
        huge.extend_from_slice(metadata);
        let e = read_all(&huge, 64).unwrap_err();
        assert!(
            e.to_string().contains("a body of 1099511627776 bytes"),
            "{e}"
        );
    }
}
