//! Parquet bodies. Parquet keeps its index at the end of the file, so the body is first spooled to
//! a temporary file (disk, not memory), then read back a row group at a time.

use std::io::Read;

use dataforge_domain::records::{BodyError, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use super::limits::{MAX_CHUNK_BYTES, footer_refusal, refusal};
use crate::arrow::decode::Conformer;
use crate::untrusted::guarded;

/// Decodes a Parquet body, handing over batches of at most `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
    _options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let mut spool = tempfile::tempfile()
        .map_err(|e| BodyError::Io(format!("cannot create a spool file: {e}")))?;
    std::io::copy(body, &mut spool).map_err(|e| BodyError::Io(e.to_string()))?;
    let not_parquet = |e: parquet::errors::ParquetError| {
        BodyError::Malformed(format!("the body is not a readable Parquet file: {e}"))
    };
    if let Some(why) = footer_refusal(&mut spool) {
        return Err(BodyError::Malformed(why));
    }
    let metadata = guarded(|| ArrowReaderMetadata::load(&spool, ArrowReaderOptions::new()))
        .map_err(|why| {
            BodyError::Malformed(format!("the body is not a readable Parquet file: {why}"))
        })?
        .map_err(not_parquet)?;
    if let Some(why) = refusal(metadata.metadata(), &mut spool, MAX_CHUNK_BYTES) {
        return Err(BodyError::Malformed(why));
    }
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(spool, metadata);
    let conformer = Conformer::new(schema, builder.schema())?;
    let reader = guarded(|| builder.with_batch_size(batch_rows).build())
        .map_err(|why| {
            BodyError::Malformed(format!("the body is not a readable Parquet file: {why}"))
        })?
        .map_err(not_parquet)?;
    conformer.consume(reader, batch_rows, sink, |done, e| {
        format!("the Parquet file is corrupt after {done} record(s): {e}")
    })
}
