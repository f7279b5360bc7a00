//! NDJSON: one JSON object per line. Reading, blank lines are ignored, and a line that is not valid
//! JSON, or not UTF-8, is a `malformed_json` violation of its record, so the other records can
//! still be checked and, with `on_error=skip`, written. Written as one object per row, each ended
//! by a line feed.

use std::io::{BufRead, BufReader, Read, Write};

use arrow_array::RecordBatch;

use dataforge_domain::records::{BodyError, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use serde::de::DeserializeSeed;

use crate::answer::{AnswerColumns, EncodeError};
use crate::cells::JsonRows;
use crate::columns::RowDecoder;
use crate::json::SLICE_ROWS;
use crate::json::decode::Record;
use crate::table::Format;

pub(crate) static FORMAT: Format = Format {
    name: "ndjson",
    media_types: &["application/x-ndjson", "application/ndjson"],
    extensions: &["ndjson", "jsonl"],
    decode: Some(decode),
    encode: Some(encode),
    read_options: &[],
};

/// Decodes an NDJSON body, handing over batches of `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
    _options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let mut reader = BufReader::with_capacity(256 * 1024, body);
    let mut decoder = RowDecoder::new(schema, batch_rows);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| BodyError::Io(e.to_string()))?;
        if read == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = decoder.rows;
        let problem = match std::str::from_utf8(&line) {
            Err(e) => Some(format!(
                "the line is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            )),
            Ok(text) => {
                let mut json = serde_json::Deserializer::from_str(text);
                Record(&mut decoder)
                    .deserialize(&mut json)
                    .and_then(|()| json.end())
                    .err()
                    .map(|e| format!("the line is not valid JSON: {e}"))
            }
        };
        if let Some(message) = problem {
            if decoder.rows == index {
                decoder.end_row(); // complete a half-read record so columns stay aligned
            }
            decoder.reject_row(index, "malformed_json", message);
        }
        if decoder.is_full() {
            decoder.flush(sink)?;
        }
    }
    decoder.finish(sink)
}

/// Writes the answer as one JSON object a line.
fn encode(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError> {
    let mut text = Vec::with_capacity(64 * 1024);
    for batch in batches {
        let batch = batch.map_err(EncodeError::Failed)?;
        let rows = JsonRows::new(&columns.columns, &batch);
        for row in 0..batch.num_rows() {
            rows.write(row, &mut text);
            text.push(b'\n');
            if (row + 1) % SLICE_ROWS == 0 {
                out.write_all(&text)?;
                text.clear();
            }
        }
        out.write_all(&text)?;
        text.clear();
    }
    Ok(())
}
