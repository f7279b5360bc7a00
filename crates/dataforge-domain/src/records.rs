//! Records as they arrive in a request: the formats a body may take, the batches a decoder makes
//! of it, and the port through which an adapter decodes bodies. Decoders live in an adapter; the
//! application only sees batches.

use std::io::Read;

use arrow_array::RecordBatch;

use crate::schema::DatasetSchema;
use crate::validate::{RejectedCells, Violations};

/// The format of a request body, by its name (`json`, `csv`...). Which formats exist, and how each
/// is read, is the formats adapter's table: the domain only needs to name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyFormat(&'static str);

impl BodyFormat {
    /// One JSON object or an array of objects: the body of single-record changes.
    pub const JSON: BodyFormat = BodyFormat("json");

    /// The format of this name (a name from the formats table).
    pub const fn named(name: &'static str) -> Self {
        BodyFormat(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

/// How a text body spells what its format leaves open: CSV's delimiter and null cell. Checked by
/// the formats adapter before any byte is read; formats that have no such choice ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// The byte between cells.
    pub delimiter: u8,
    /// A cell spelled so is null (beside the empty cell, always null).
    pub null: Option<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            delimiter: b',',
            null: None,
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
    /// Reads `body` in `format` (spelled as `options` say), handing each batch of at most `batch_rows` records to `sink` as
    /// soon as it is full, and returns how many records were read. Runs on a blocking thread.
    fn decode(
        &self,
        format: BodyFormat,
        options: &ReadOptions,
        schema: &DatasetSchema,
        body: &mut dyn Read,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<u64, BodyError>;
}
