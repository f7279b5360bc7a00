//! CSV bodies (RFC 4180): a header row names the fields, in any order; an empty cell is null. A
//! row with the wrong number of cells, or a cell that is not UTF-8, is a violation of its record.

use std::io::Read;

use dataforge_domain::records::{BodyError, DecodedBatch, Halt};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::ValueError;

use crate::columns::RowDecoder;

/// Decodes a CSV body, handing over batches of `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(body);
    let columns = header_columns(schema, reader.byte_headers().map_err(malformed)?)?;
    let mut decoder = RowDecoder::new(schema, batch_rows);
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(malformed)? {
        if record.len() != columns.len() {
            let message = format!(
                "the row has {} cells but the header names {} columns",
                record.len(),
                columns.len()
            );
            let index = decoder.rows;
            decoder.end_row();
            decoder.reject_row(index, "column_count", message);
        } else {
            for (cell, &col) in record.iter().zip(&columns) {
                decoder.present[col] = true;
                let ty = schema.fields[col].field_type;
                let appended = match std::str::from_utf8(cell) {
                    Ok(text) => decoder.columns[col].append_text(ty, text),
                    Err(e) => {
                        decoder.columns[col].append_null();
                        Err(ValueError {
                            code: "invalid_utf8",
                            message: format!(
                                "the cell is not valid UTF-8 (at byte {})",
                                e.valid_up_to()
                            ),
                        })
                    }
                };
                if let Err(e) = appended {
                    decoder.reject_cell(col, e);
                }
            }
            decoder.end_row();
        }
        if decoder.is_full() {
            decoder.flush(sink)?;
        }
    }
    decoder.finish(sink)
}

/// The field position of each header column; unknown or repeated names fail the request.
fn header_columns(
    schema: &DatasetSchema,
    header: &csv::ByteRecord,
) -> Result<Vec<usize>, BodyError> {
    let mut columns = Vec::with_capacity(header.len());
    for name in header.iter() {
        let name = std::str::from_utf8(name)
            .map_err(|_| BodyError::Malformed("the CSV header is not valid UTF-8".into()))?
            .trim();
        let col = schema.field_index(name).ok_or_else(|| {
            BodyError::Malformed(format!(
                "the CSV header names `{name}`, which is not a field of {}; fields are: {}",
                schema.name,
                schema.field_names()
            ))
        })?;
        if columns.contains(&col) {
            return Err(BodyError::Malformed(format!(
                "the CSV header names `{name}` twice"
            )));
        }
        columns.push(col);
    }
    if columns.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(columns)
}

fn malformed(e: csv::Error) -> BodyError {
    match e.kind() {
        csv::ErrorKind::Io(io) => BodyError::Io(io.to_string()),
        _ => BodyError::Malformed(format!("the body is not valid CSV: {e}")),
    }
}
