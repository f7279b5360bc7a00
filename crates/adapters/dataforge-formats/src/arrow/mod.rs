//! Arrow IPC streams. Read with bounds on what a stream may declare (see [`limits`]), columns
//! matched to fields by name and conformed to the schema; written under the answer's schema.

pub(crate) mod decode;
mod limits;

use std::io::Write;

use arrow_array::RecordBatch;

use crate::answer::{AnswerColumns, EncodeError, arrow_error};
use crate::table::Format;

pub(crate) static FORMAT: Format = Format {
    name: "arrow",
    media_types: &["application/vnd.apache.arrow.stream"],
    extensions: &["arrow", "arrows", "ipc"],
    decode: Some(decode::decode),
    encode: Some(encode),
    read_options: &[],
};

/// Writes the answer as an Arrow IPC stream, a message per batch.
fn encode(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError> {
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(out, &columns.schema).map_err(arrow_error)?;
    for batch in batches {
        let batch = columns.conform(&batch.map_err(EncodeError::Failed)?)?;
        writer.write(&batch).map_err(arrow_error)?;
    }
    writer.finish().map_err(arrow_error)
}
