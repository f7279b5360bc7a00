//! CSV bodies (RFC 4180): a header row names the fields, in any order (in any case, where that
//! is unambiguous); an empty cell, or one spelled as the `null` option says, is null. A row with
//! the wrong number of cells, or a cell that is not UTF-8, is a violation of its record.

use std::io::Read;

use dataforge_domain::records::{BodyError, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::ValueError;

use crate::columns::RowDecoder;

/// Decodes a CSV body, handing over batches of `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
    options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(body);
    let columns = header_columns(schema, reader.byte_headers().map_err(malformed)?)?;
    let mut decoder = RowDecoder::new(schema, batch_rows);
    let null = options.null.as_deref().map(str::as_bytes);
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
                    _ if null == Some(cell) => {
                        decoder.columns[col].append_null();
                        Ok(())
                    }
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
    let mut columns: Vec<usize> = Vec::with_capacity(header.len());
    let mut names: Vec<&str> = Vec::with_capacity(header.len());
    for name in header.iter() {
        let name = std::str::from_utf8(name)
            .map_err(|_| BodyError::Malformed("the CSV header is not valid UTF-8".into()))?
            .trim();
        let col = header_field(schema, name)?;
        if let Some(at) = columns.iter().position(|&c| c == col) {
            return Err(BodyError::Malformed(twice(
                names[at],
                name,
                &schema.fields[col].name,
            )));
        }
        columns.push(col);
        names.push(name);
    }
    if columns.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(columns)
}

/// Why two header columns naming one field are refused.
fn twice(first: &str, second: &str, field: &str) -> String {
    if first == second {
        format!("the CSV header names `{second}` twice")
    } else {
        format!(
            "the CSV header names `{first}` and `{second}`, which are both the field `{field}` ignoring case"
        )
    }
}

/// The field a header column names: the one of that exact name, else the one only field equal to
/// it ignoring case (headers written by spreadsheets and other databases often differ in case).
fn header_field(schema: &DatasetSchema, name: &str) -> Result<usize, BodyError> {
    if let Some(col) = schema.field_index(name) {
        return Ok(col);
    }
    let alike: Vec<usize> = (0..schema.fields.len())
        .filter(|&i| schema.fields[i].name.eq_ignore_ascii_case(name))
        .collect();
    match alike.as_slice() {
        [col] => Ok(*col),
        [] => Err(BodyError::Malformed(format!(
            "the CSV header names `{name}`, which is not a field of {}; fields are: {}",
            schema.name,
            schema.field_names()
        ))),
        several => Err(BodyError::Malformed(format!(
            "the CSV header names `{name}`, which matches the fields {} ignoring case; name one exactly",
            several
                .iter()
                .map(|&i| format!("`{}`", schema.fields[i].name))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

fn malformed(e: csv::Error) -> BodyError {
    match e.kind() {
        csv::ErrorKind::Io(io) => BodyError::Io(io.to_string()),
        _ => BodyError::Malformed(format!("the body is not valid CSV: {e}")),
    }
}
