//! Parquet bodies. Parquet keeps its index at the end of the file, so the body is first spooled to
//! a temporary file (disk, not memory), then read back a row group at a time.

use std::io::Read;

use dataforge_domain::records::{BodyError, DecodedBatch, Halt};
use dataforge_domain::schema::DatasetSchema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;

use crate::arrow::Conformer;

/// Largest column chunk, uncompressed as the file's metadata declares it, that is decoded (the
/// bound of an Arrow message's body): a few kilobytes of Parquet can declare gigabytes of highly
/// compressed pages, which decoding would hold in memory. (Page headers declare their own sizes,
/// which the parquet crate trusts; those are not bounded here.)
const MAX_CHUNK_BYTES: i64 = 256 * 1024 * 1024;

/// Why a file is refused before decoding: a column chunk declaring more than `limit` bytes.
fn oversized_chunk(metadata: &ParquetMetaData, limit: i64) -> Option<String> {
    metadata
        .row_groups()
        .iter()
        .enumerate()
        .flat_map(|(group, row_group)| row_group.columns().iter().map(move |c| (group, c)))
        .find(|(_, column)| !(0..=limit).contains(&column.uncompressed_size()))
        .map(|(group, column)| {
            format!(
                "column `{}` of row group {group} declares {} bytes uncompressed, more than the {limit} a column chunk may hold; write the file with smaller row groups",
                column.column_path().string(),
                column.uncompressed_size()
            )
        })
}

/// Decodes a Parquet body, handing over batches of at most `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
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
    let builder = ParquetRecordBatchReaderBuilder::try_new(spool).map_err(not_parquet)?;
    if let Some(why) = oversized_chunk(builder.metadata(), MAX_CHUNK_BYTES) {
        return Err(BodyError::Malformed(why));
    }
    let conformer = Conformer::new(schema, builder.schema())?;
    let reader = builder
        .with_batch_size(batch_rows)
        .build()
        .map_err(not_parquet)?;
    conformer.consume(reader, batch_rows, sink, |done, e| {
        format!("the Parquet file is corrupt after {done} record(s): {e}")
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// A one-column Parquet file of `rows` equal strings (compressed to almost nothing).
    fn metadata(rows: usize) -> ParquetMetaData {
        let column: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(100); rows]));
        let batch = RecordBatch::try_from_iter([("name", column)]).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        reader.metadata().clone()
    }

    #[test]
    fn chunks_declaring_more_than_the_bound_are_refused_before_decoding() {
        let metadata = metadata(10_000);
        let declared = metadata.row_group(0).column(0).uncompressed_size();
        assert!(oversized_chunk(&metadata, declared).is_none());
        let refused = oversized_chunk(&metadata, declared - 1).expect("refused");
        assert!(
            refused.contains("column `name` of row group 0 declares"),
            "{refused}"
        );
    }
}
