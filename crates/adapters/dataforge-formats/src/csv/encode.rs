//! Writes an answer as CSV, a slice of rows at a time, so that a streamed answer is sent in chunks
//! of about a chunk's size rather than a whole batch's text.

use std::io::Write;

use arrow_array::RecordBatch;

use crate::answer::{AnswerColumns, EncodeError};
use crate::cells::{csv_header, csv_rows};

/// Rows encoded before they are handed to the output.
const SLICE_ROWS: usize = 512;

pub(super) fn encode(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError> {
    let mut text = Vec::with_capacity(64 * 1024);
    csv_header(&columns.columns, &mut text);
    out.write_all(&text)?;
    for batch in batches {
        let batch = batch.map_err(EncodeError::Failed)?;
        for start in (0..batch.num_rows()).step_by(SLICE_ROWS) {
            let rows = SLICE_ROWS.min(batch.num_rows() - start);
            text.clear();
            csv_rows(&columns.columns, &batch.slice(start, rows), &mut text);
            out.write_all(&text)?;
        }
    }
    Ok(())
}
