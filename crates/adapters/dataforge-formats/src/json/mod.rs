//! JSON: one object or an array of objects. Read with serde straight into column builders;
//! written as an array of objects, one per row.

pub(crate) mod decode;

use std::io::Write;

use arrow_array::RecordBatch;

use crate::answer::{AnswerColumns, EncodeError};
use crate::cells::JsonRows;
use crate::table::Format;

pub(crate) static FORMAT: Format = Format {
    name: "json",
    media_types: &["application/json"],
    extensions: &["json"],
    decode: Some(decode::decode),
    encode: Some(encode),
    read_options: &[],
};

/// Rows encoded before they are handed to the output, so a chunk is sent about as soon as full.
pub(crate) const SLICE_ROWS: usize = 512;

/// Writes the answer as one JSON array of objects.
fn encode(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError> {
    out.write_all(b"[")?;
    let mut first = true;
    let mut text = Vec::with_capacity(64 * 1024);
    for batch in batches {
        let batch = batch.map_err(EncodeError::Failed)?;
        let rows = JsonRows::new(&columns.columns, &batch);
        for row in 0..batch.num_rows() {
            if !first {
                text.push(b',');
            }
            first = false;
            rows.write(row, &mut text);
            if (row + 1) % SLICE_ROWS == 0 {
                out.write_all(&text)?;
                text.clear();
            }
        }
        out.write_all(&text)?;
        text.clear();
    }
    out.write_all(b"]")?;
    Ok(())
}
