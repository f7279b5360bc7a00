//! Record batches as PostgreSQL's binary `COPY` format, written straight from the Arrow columns
//! (no value per cell on the way), with the write's position column after the fields.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bytes::{BufMut, BytesMut};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::FieldType;

use crate::values::{EPOCH_DAYS, EPOCH_MICROS};

/// The signature, flags and header extension every binary `COPY` starts with.
pub(crate) fn header(out: &mut BytesMut) {
    out.put_slice(b"PGCOPY\n\xff\r\n\0");
    out.put_i32(0);
    out.put_i32(0);
}

/// The end of a binary `COPY`.
pub(crate) fn trailer(out: &mut BytesMut) {
    out.put_i16(-1);
}

/// Appends rows `rows` of `batch` (shaped as `schema`), numbering them from `first_row`.
pub(crate) fn rows(
    schema: &DatasetSchema,
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    first_row: i64,
    out: &mut BytesMut,
) {
    let fields = (schema.fields.len() + 1) as i16;
    for row in rows.clone() {
        out.put_i16(fields);
        for (field, column) in schema.fields.iter().zip(batch.columns()) {
            cell(field.field_type, column.as_ref(), row, out);
        }
        out.put_i32(8);
        out.put_i64(first_row + (row - rows.start) as i64);
    }
}

/// One cell: its length, then its bytes (`-1` and nothing for null).
fn cell(ty: FieldType, column: &dyn Array, row: usize, out: &mut BytesMut) {
    if column.is_null(row) {
        out.put_i32(-1);
        return;
    }
    match ty {
        FieldType::Integer => {
            out.put_i32(8);
            out.put_i64(column.as_primitive::<Int64Type>().value(row));
        }
        FieldType::Float => {
            out.put_i32(8);
            out.put_f64(column.as_primitive::<Float64Type>().value(row));
        }
        FieldType::Boolean => {
            out.put_i32(1);
            out.put_u8(u8::from(column.as_boolean().value(row)));
        }
        FieldType::Date => {
            out.put_i32(4);
            out.put_i32(column.as_primitive::<Date32Type>().value(row) - EPOCH_DAYS);
        }
        FieldType::Timestamp => {
            out.put_i32(8);
            out.put_i64(
                column.as_primitive::<TimestampMicrosecondType>().value(row) - EPOCH_MICROS,
            );
        }
        FieldType::String | FieldType::Json => {
            let text = column.as_string::<i32>().value(row);
            out.put_i32(text.len() as i32);
            out.put_slice(text.as_bytes());
        }
    }
}
