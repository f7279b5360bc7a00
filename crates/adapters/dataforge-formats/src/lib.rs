//! Request body formats (JSON, NDJSON, CSV, Arrow IPC, Parquet). Each decoder reads a body as a stream and writes values straight into
//! typed Arrow column builders (no document tree, no per-row object), handing over a batch every
//! `batch_rows` records so memory stays bounded whatever the body's size.

mod arrow;
mod columns;
mod csv;
mod ipc_limits;
mod json;
mod ndjson;
mod parquet;
mod parquet_limits;
mod untrusted;

#[cfg(test)]
mod tests;

use std::io::Read;

use dataforge_domain::records::{BatchDecoder, BodyError, BodyFormat, DecodedBatch, Halt};
use dataforge_domain::schema::DatasetSchema;

/// The decoders of every supported body format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Formats;

impl BatchDecoder for Formats {
    fn decode(
        &self,
        format: BodyFormat,
        schema: &DatasetSchema,
        body: &mut dyn Read,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<u64, BodyError> {
        let batch_rows = batch_rows.max(1);
        match format {
            BodyFormat::Json => json::decode(schema, body, batch_rows, sink),
            BodyFormat::Ndjson => ndjson::decode(schema, body, batch_rows, sink),
            BodyFormat::Csv => csv::decode(schema, body, batch_rows, sink),
            BodyFormat::Arrow => arrow::decode(schema, body, batch_rows, sink),
            BodyFormat::Parquet => parquet::decode(schema, body, batch_rows, sink),
        }
    }
}
