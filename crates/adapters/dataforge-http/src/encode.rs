//! JSON encoding of stored rows: one object per row, fields in the requested order, values in the
//! same notation the API accepts (RFC 3339 timestamps, dates as YYYY-MM-DD, json fields inline).

use dataforge_app::read::Rows;
use dataforge_domain::value::Value;
use serde_json::Value as Json;

/// Writes rows as a JSON array into `out`.
pub fn rows_json(rows: &Rows, out: &mut Vec<u8>) {
    out.push(b'[');
    let mut first = true;
    for batch in &rows.batches {
        for row in 0..batch.num_rows() {
            if !first {
                out.push(b',');
            }
            first = false;
            write_row(rows, batch, row, out);
        }
    }
    out.push(b']');
}

/// Writes one row as a JSON object into `out`.
pub fn write_row(rows: &Rows, batch: &arrow_array::RecordBatch, row: usize, out: &mut Vec<u8>) {
    out.push(b'{');
    for (col, &field) in rows.fields.iter().enumerate() {
        if col > 0 {
            out.push(b',');
        }
        let field = &rows.schema.fields[field];
        write_json(&Json::String(field.name.clone()), out);
        out.push(b':');
        let value = Value::from_array(field.field_type, batch.column(col), row);
        write_json(&value.to_json(), out);
    }
    out.push(b'}');
}

fn write_json(value: &Json, out: &mut Vec<u8>) {
    // Serializing a serde_json::Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}
