//! The compact binary form of whole records kept in the key index, so a read by key is one lookup
//! instead of a table scan. Per field, in schema order: a presence byte (0 = null), then the value:
//! 8 bytes little-endian for integers, floats and timestamps, 4 for dates, 1 for booleans, and a
//! 4-byte length and the UTF-8 bytes for strings and json.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value};

fn column_error(field: &str) -> StoreError {
    StoreError::Internal(format!("column `{field}` does not have its field's type"))
}

/// Encodes every row of `batch` (shaped as the dataset's schema).
pub(crate) fn encode_rows(
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut rows: Vec<Vec<u8>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(128))
        .collect();
    for (field, column) in schema.fields.iter().zip(batch.columns()) {
        let any = column.as_any();
        let bad = || column_error(&field.name);
        macro_rules! fixed {
            ($array:ty) => {{
                let array = any.downcast_ref::<$array>().ok_or_else(bad)?;
                for (row, out) in rows.iter_mut().enumerate() {
                    if array.is_null(row) {
                        out.push(0);
                    } else {
                        out.push(1);
                        out.extend_from_slice(&array.value(row).to_le_bytes());
                    }
                }
            }};
        }
        match field.field_type {
            FieldType::Integer => fixed!(Int64Array),
            FieldType::Float => fixed!(Float64Array),
            FieldType::Date => fixed!(Date32Array),
            FieldType::Timestamp => fixed!(TimestampMicrosecondArray),
            FieldType::Boolean => {
                let array = any.downcast_ref::<BooleanArray>().ok_or_else(bad)?;
                for (row, out) in rows.iter_mut().enumerate() {
                    out.push(if array.is_null(row) {
                        0
                    } else {
                        1 + u8::from(array.value(row))
                    });
                }
            }
            FieldType::String | FieldType::Json => {
                let array = any.downcast_ref::<StringArray>().ok_or_else(bad)?;
                for (row, out) in rows.iter_mut().enumerate() {
                    if array.is_null(row) {
                        out.push(0);
                    } else {
                        let text = array.value(row).as_bytes();
                        out.push(1);
                        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                        out.extend_from_slice(text);
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// Reads `n` bytes from the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
    if bytes.len() < n {
        return Err(StoreError::Internal(
            "a record in the key index is cut short".into(),
        ));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

fn array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(bytes, N)?);
    Ok(out)
}

/// One column being decoded, typed as its field.
enum Decoded {
    Integer(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Date(Vec<Option<i32>>),
    Timestamp(Vec<Option<i64>>),
    Boolean(Vec<Option<bool>>),
    Text(StringBuilder),
}

impl Decoded {
    fn new(ty: FieldType, rows: usize) -> Self {
        match ty {
            FieldType::Integer => Decoded::Integer(Vec::with_capacity(rows)),
            FieldType::Float => Decoded::Float(Vec::with_capacity(rows)),
            FieldType::Date => Decoded::Date(Vec::with_capacity(rows)),
            FieldType::Timestamp => Decoded::Timestamp(Vec::with_capacity(rows)),
            FieldType::Boolean => Decoded::Boolean(Vec::with_capacity(rows)),
            FieldType::String | FieldType::Json => {
                Decoded::Text(StringBuilder::with_capacity(rows, rows * 16))
            }
        }
    }

    /// Reads this column's next value from the front of `bytes`.
    fn read(&mut self, bytes: &mut &[u8]) -> Result<(), StoreError> {
        let tag = take(bytes, 1)?[0];
        let present = tag != 0;
        macro_rules! fixed {
            ($values:expr, $ty:ty) => {
                $values.push(if present {
                    Some(<$ty>::from_le_bytes(array(bytes)?))
                } else {
                    None
                })
            };
        }
        match self {
            Decoded::Integer(values) | Decoded::Timestamp(values) => fixed!(values, i64),
            Decoded::Float(values) => fixed!(values, f64),
            Decoded::Date(values) => fixed!(values, i32),
            Decoded::Boolean(values) => values.push(present.then_some(tag == 2)),
            Decoded::Text(builder) => {
                if present {
                    let len = u32::from_le_bytes(array(bytes)?) as usize;
                    let text = std::str::from_utf8(take(bytes, len)?).map_err(|_| {
                        StoreError::Internal("a record in the key index is not UTF-8".into())
                    })?;
                    builder.append_value(text);
                } else {
                    builder.append_null();
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Decoded::Integer(values) => Arc::new(Int64Array::from(values)),
            Decoded::Float(values) => Arc::new(Float64Array::from(values)),
            Decoded::Date(values) => Arc::new(Date32Array::from(values)),
            Decoded::Timestamp(values) => Arc::new(TimestampMicrosecondArray::from(values)),
            Decoded::Boolean(values) => Arc::new(BooleanArray::from(values)),
            Decoded::Text(mut builder) => Arc::new(builder.finish()),
        }
    }
}

/// Decodes records into one batch shaped as the dataset's schema, column by column.
pub(crate) fn decode_rows(
    schema: &DatasetSchema,
    records: &[&[u8]],
) -> Result<RecordBatch, StoreError> {
    let mut columns: Vec<Decoded> = schema
        .fields
        .iter()
        .map(|f| Decoded::new(f.field_type, records.len()))
        .collect();
    for record in records {
        let mut bytes = *record;
        for column in &mut columns {
            column.read(&mut bytes)?;
        }
    }
    let columns = columns.into_iter().map(Decoded::finish).collect();
    RecordBatch::try_new(Arc::clone(schema.arrow_schema()), columns)
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// A one-row array of `ty` holding `value` (null when it does not fit).
pub(crate) fn one_value_array(ty: FieldType, value: &Value) -> ArrayRef {
    match (ty, value) {
        (FieldType::Integer, Value::Integer(v)) => Arc::new(Int64Array::from(vec![*v])),
        (FieldType::Float, Value::Float(v)) => Arc::new(Float64Array::from(vec![*v])),
        (FieldType::Date, Value::Date(v)) => Arc::new(Date32Array::from(vec![*v])),
        (FieldType::Timestamp, Value::Timestamp(v)) => {
            Arc::new(TimestampMicrosecondArray::from(vec![*v]))
        }
        (FieldType::Boolean, Value::Boolean(v)) => Arc::new(BooleanArray::from(vec![*v])),
        (FieldType::String | FieldType::Json, Value::String(v) | Value::Json(v)) => {
            Arc::new(StringArray::from(vec![v.as_str()]))
        }
        _ => arrow_array::new_null_array(&ty.arrow_type(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataforge_domain::testing::wells;

    #[test]
    fn records_round_trip_with_nulls() {
        let schema = wells();
        let values = [
            vec![
                Value::Integer(7),
                Value::Integer(-3),
                Value::String("näme, \"quoted\"".into()),
                Value::Timestamp(1_600_000_000_000_000),
                Value::Float(2.5),
                Value::Null,
                Value::Boolean(false),
                Value::Json("{\"a\":[1,2]}".into()),
            ],
            vec![
                Value::Integer(8),
                Value::Null,
                Value::String(String::new()),
                Value::Null,
                Value::Null,
                Value::String("n".into()),
                Value::Boolean(true),
                Value::Null,
            ],
        ];
        let mut batches = Vec::new();
        for row in values {
            let columns = schema
                .fields
                .iter()
                .zip(&row)
                .map(|(f, v)| one_value_array(f.field_type, v))
                .collect();
            let batch = RecordBatch::try_new(Arc::clone(schema.arrow_schema()), columns).unwrap();
            let encoded = encode_rows(&schema, &batch).unwrap();
            let decoded = decode_rows(&schema, &[&encoded[0]]).unwrap();
            assert_eq!(decoded, batch);
            assert!(decode_rows(&schema, &[&encoded[0][..encoded[0].len() - 1]]).is_err());
            batches.push(batch);
        }
        // several records decode into one batch, column by column
        let both = arrow_select::concat::concat_batches(schema.arrow_schema(), &batches).unwrap();
        let encoded = encode_rows(&schema, &both).unwrap();
        let records: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        assert_eq!(decode_rows(&schema, &records).unwrap(), both);
    }
}
