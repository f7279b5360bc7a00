//! Data formats (JSON, NDJSON, CSV, Arrow IPC, Parquet), one module each holding its decoder and
//! encoder, and the one [table](table) of formats everything else reads. Decoders read a body as a
//! stream and write values straight into typed Arrow column builders (no document tree, no per-row
//! object), handing over a batch every `batch_rows` records so memory stays bounded whatever the
//! body's size. Encoders write an answer batch by batch to any `Write`, which may send it on as it
//! fills. No HTTP here: negotiation and streaming are the HTTP adapter's, choosing from the table.

mod answer;
mod arrow;
mod cells;
mod columns;
mod csv;
mod json;
mod ndjson;
mod parquet;
pub mod table;
mod untrusted;

#[cfg(test)]
mod tests;

use std::io::Read;

use dataforge_domain::records::{
    BatchDecoder, BodyError, BodyFormat, DecodedBatch, Halt, ReadOptions,
};
use dataforge_domain::schema::DatasetSchema;

pub use answer::{AnswerColumns, EncodeError, UTC, exported_type};
pub use cells::JsonRows;
pub use table::{FORMATS, Format, ReadOption, ReadOptionError, read_options};

/// The decoders of every format of the table that can be read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Formats;

impl BatchDecoder for Formats {
    fn decode(
        &self,
        format: BodyFormat,
        options: &ReadOptions,
        schema: &DatasetSchema,
        body: &mut dyn Read,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<u64, BodyError> {
        let Some(decode) = table::of(format).and_then(|f| f.decode) else {
            return Err(BodyError::Malformed(format!(
                "cannot read a {} body; formats read: {}",
                format.name(),
                table::names(table::decodable())
            )));
        };
        decode(schema, options, body, batch_rows.max(1), sink)
    }
}
