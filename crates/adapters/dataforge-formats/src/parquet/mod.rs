//! Parquet files. Read from a spool file with bounds on what the footer and pages declare (see
//! [`limits`]); written under the answer's schema, in row groups of 128Ki rows.

mod decode;
mod limits;

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::answer::{AnswerColumns, EncodeError};
use crate::table::Format;

pub(crate) static FORMAT: Format = Format {
    name: "parquet",
    media_types: &["application/vnd.apache.parquet"],
    extensions: &["parquet"],
    decode: Some(decode::decode),
    encode: Some(encode),
    read_options: &[],
};

/// Rows in one row group of a written file.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes the answer as one Parquet file (Snappy-compressed).
fn encode(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(out, Arc::clone(&columns.schema), Some(properties))
        .map_err(parquet_error)?;
    for batch in batches {
        let batch = columns.conform(&batch.map_err(EncodeError::Failed)?)?;
        writer.write(&batch).map_err(parquet_error)?;
    }
    writer.close().map_err(parquet_error)?;
    Ok(())
}

/// A Parquet writer's error, as the output's own when it is one (the client went).
fn parquet_error(e: ParquetError) -> EncodeError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => EncodeError::Io(*io),
            Err(other) => EncodeError::failed(other),
        },
        other => EncodeError::failed(other),
    }
}
