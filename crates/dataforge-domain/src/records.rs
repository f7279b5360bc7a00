//! Records as they arrive in a request: the formats a body may take, the batches a decoder makes
//! of it, and the port through which an adapter decodes bodies. Decoders live in an adapter; the
//! application only sees batches.

use std::io::Read;

use arrow_array::RecordBatch;

use crate::schema::DatasetSchema;
use crate::validate::{RejectedCells, Violations};

/// The formats a request body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object or an array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header row naming the fields (RFC 4180).
    Csv,
    /// An Arrow IPC stream; columns are matched to fields by name.
    Arrow,
    /// A Parquet file; columns are matched to fields by name.
    Parquet,
}

impl BodyFormat {
    pub fn name(self) -> &'static str {
        match self {
            BodyFormat::Json => "json",
            BodyFormat::Ndjson => "ndjson",
            BodyFormat::Csv => "csv",
            BodyFormat::Arrow => "arrow",
            BodyFormat::Parquet => "parquet",
        }
    }
}

/// Rows a decoder puts in one batch: large enough for bulk appends, small enough to bound memory.
pub const BATCH_ROWS: usize = 64 * 1024;

/// A batch of a request's records, shaped as the dataset's Arrow schema, with what the decoder
/// already found wrong. A bad value is stored as null and reported, so positions stay aligned.
#[derive(Debug)]
pub struct DecodedBatch {
    pub batch: RecordBatch,
    /// The 1-based request position of the batch's first record.
    pub first_row: u64,
    /// Violations found while decoding (row numbers are request positions).
    pub violations: Violations,
    /// Cells already reported, by batch row.
    pub rejected: RejectedCells,
}

/// Returned by a batch sink to stop decoding (the request failed elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt;

/// Why a body could not be read at all (as opposed to a record being invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body must be a JSON object or an array of objects")]
    Shape,
    /// A body that cannot be read in its format (bad CSV header or quoting), described in full.
    #[error("{0}")]
    Malformed(String),
    /// Columns that cannot become fields (unknown, or of a type that does not convert losslessly);
    /// each is a violation with row 0, meaning the whole column.
    #[error("{} column(s) do not fit the schema", .0.len())]
    Columns(Vec<crate::validate::Violation>),
    #[error("the request holds no records")]
    Empty,
    #[error("reading the body failed: {0}")]
    Io(String),
    #[error("decoding stopped")]
    Halted,
    #[error("cannot assemble the record batch: {0}")]
    Batch(String),
}

/// Decodes request bodies into batches; implemented by the formats adapter.
pub trait BatchDecoder: Send + Sync {
    /// Reads `body` in `format`, handing each batch of at most `batch_rows` records to `sink` as
    /// soon as it is full, and returns how many records were read. Runs on a blocking thread.
    fn decode(
        &self,
        format: BodyFormat,
        schema: &DatasetSchema,
        body: &mut dyn Read,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<u64, BodyError>;
}
