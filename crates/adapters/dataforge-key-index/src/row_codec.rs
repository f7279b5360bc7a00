//! The binary forms of records. Whole records ([`encode_rows`]) travel in the journal: per field, in
//! schema order, a presence byte (0 = null), then the value: 8 bytes little-endian for integers,
//! floats and timestamps, 4 for dates, 1 for booleans, and a 4-byte length and the UTF-8 bytes for
//! strings and json.
//!
//! The key index stores less ([`encode_values`]): the record is kept under its key, so its value
//! leaves the key fields out, and says the rest densely, since the index may hold hundreds of
//! millions of records: a bitmap of the non-key fields present (bit `i % 8` of byte `i / 8`), then
//! each present value, in schema order: integers, timestamps and dates as zigzag LEB128 varints,
//! floats as 8 bytes little-endian, booleans as one byte, strings and json as a varint length and
//! the UTF-8 bytes. [`decode_values`] puts the key's columns back.

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

/// Appends `v` as an LEB128 varint: seven bits a byte, low bits first.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an LEB128 varint from the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Result<u64, StoreError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(bytes, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(StoreError::Internal(
        "a record in the key index holds a varint too long".into(),
    ))
}

/// Small negative numbers as small unsigned ones, so their varints are short too.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// The positions of the fields a stored value holds: those outside the primary key, in schema
/// order.
fn value_fields(schema: &DatasetSchema) -> Vec<usize> {
    (0..schema.fields.len())
        .filter(|i| !schema.primary_key.contains(i))
        .collect()
}

/// The values the key index stores for every row of `batch` (shaped as the dataset's schema): the
/// non-key fields, densely (see the module's documentation).
pub(crate) fn encode_values(
    schema: &DatasetSchema,
    batch: &RecordBatch,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let fields = value_fields(schema);
    let bitmap = fields.len().div_ceil(8);
    let mut rows: Vec<Vec<u8>> = (0..batch.num_rows())
        .map(|_| {
            let mut row = Vec::with_capacity(96);
            row.resize(bitmap, 0);
            row
        })
        .collect();
    for (slot, &position) in fields.iter().enumerate() {
        let field = &schema.fields[position];
        let any = batch.column(position).as_any();
        let bad = || column_error(&field.name);
        let (byte, bit) = (slot / 8, 1u8 << (slot % 8));
        macro_rules! each {
            ($array:ty, |$out:ident, $value:ident| $body:expr) => {{
                let array = any.downcast_ref::<$array>().ok_or_else(bad)?;
                for (row, $out) in rows.iter_mut().enumerate() {
                    if array.is_valid(row) {
                        $out[byte] |= bit;
                        let $value = array.value(row);
                        $body;
                    }
                }
            }};
        }
        match field.field_type {
            FieldType::Integer => each!(Int64Array, |out, v| put_varint(out, zigzag(v))),
            FieldType::Timestamp => {
                each!(TimestampMicrosecondArray, |out, v| put_varint(
                    out,
                    zigzag(v)
                ))
            }
            FieldType::Date => {
                each!(Date32Array, |out, v| put_varint(out, zigzag(i64::from(v))))
            }
            FieldType::Float => {
                each!(Float64Array, |out, v| out
                    .extend_from_slice(&v.to_le_bytes()))
            }
            FieldType::Boolean => each!(BooleanArray, |out, v| out.push(u8::from(v))),
            FieldType::String | FieldType::Json => each!(StringArray, |out, v| {
                put_varint(out, v.len() as u64);
                out.extend_from_slice(v.as_bytes())
            }),
        }
    }
    Ok(rows)
}

impl Decoded {
    /// Reads this column's next value, as [`encode_values`] wrote it, from the front of `bytes`.
    fn read_value(&mut self, present: bool, bytes: &mut &[u8]) -> Result<(), StoreError> {
        if !present {
            self.push_null();
            return Ok(());
        }
        match self {
            Decoded::Integer(values) | Decoded::Timestamp(values) => {
                values.push(Some(unzigzag(varint(bytes)?)))
            }
            Decoded::Date(values) => {
                let day = i32::try_from(unzigzag(varint(bytes)?)).map_err(|_| {
                    StoreError::Internal("a date in the key index is out of range".into())
                })?;
                values.push(Some(day))
            }
            Decoded::Float(values) => values.push(Some(f64::from_le_bytes(array(bytes)?))),
            Decoded::Boolean(values) => values.push(Some(take(bytes, 1)?[0] != 0)),
            Decoded::Text(builder) => {
                let len = usize::try_from(varint(bytes)?).unwrap_or(usize::MAX);
                let text = std::str::from_utf8(take(bytes, len)?).map_err(|_| {
                    StoreError::Internal("a record in the key index is not UTF-8".into())
                })?;
                builder.append_value(text);
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Decoded::Integer(values) | Decoded::Timestamp(values) => values.push(None),
            Decoded::Date(values) => values.push(None),
            Decoded::Float(values) => values.push(None),
            Decoded::Boolean(values) => values.push(None),
            Decoded::Text(builder) => builder.append_null(),
        }
    }
}

/// Decodes values stored by [`encode_values`] into one batch shaped as the dataset's schema,
/// taking the key fields from `key_columns` (in key order, a row per value).
pub(crate) fn decode_values(
    schema: &DatasetSchema,
    key_columns: &[ArrayRef],
    values: &[&[u8]],
) -> Result<RecordBatch, StoreError> {
    let fields = value_fields(schema);
    let bitmap = fields.len().div_ceil(8);
    let mut columns: Vec<Decoded> = fields
        .iter()
        .map(|&f| Decoded::new(schema.fields[f].field_type, values.len()))
        .collect();
    for value in values {
        let mut bytes = *value;
        let present = take(&mut bytes, bitmap)?;
        for (slot, column) in columns.iter_mut().enumerate() {
            column.read_value(present[slot / 8] & (1 << (slot % 8)) != 0, &mut bytes)?;
        }
        if !bytes.is_empty() {
            return Err(StoreError::Internal(
                "a record in the key index is longer than its fields".into(),
            ));
        }
    }
    let mut decoded = columns.into_iter().map(Decoded::finish);
    let all = (0..schema.fields.len())
        .map(|i| match schema.primary_key.iter().position(|&k| k == i) {
            Some(k) => key_columns.get(k).cloned(),
            None => decoded.next(),
        })
        .collect::<Option<Vec<ArrayRef>>>()
        .ok_or_else(|| StoreError::Internal("a key has fewer columns than the schema's".into()))?;
    RecordBatch::try_new(Arc::clone(schema.arrow_schema()), all)
        .map_err(|e| StoreError::Internal(e.to_string()))
}

/// A one-row array of `ty` holding `value` (null when it does not fit).
pub fn one_value_array(ty: FieldType, value: &Value) -> ArrayRef {
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

    /// `wells` with a date, keyed by (period, well_code): key fields neither first nor in schema
    /// order.
    fn keyed_by_period_and_well() -> Arc<DatasetSchema> {
        use dataforge_domain::schema::build_catalog;
        use dataforge_domain::testing::{dataset, field};
        let fields = vec![
            field("well_code", "integer"),
            field("field_code", "integer"),
            field("name", "string"),
            field("period", "timestamp"),
            field("oil", "float"),
            field("note", "string"),
            field("active", "boolean"),
            field("extra", "json"),
            field("day", "date"),
        ];
        let catalog = build_catalog(&[dataset("wells", fields, &["period", "well_code"])]).unwrap();
        catalog.get("wells").unwrap().clone()
    }

    fn batch_of(schema: &DatasetSchema, rows: &[Vec<Value>]) -> RecordBatch {
        let batches: Vec<RecordBatch> = rows
            .iter()
            .map(|row| {
                let columns = schema
                    .fields
                    .iter()
                    .zip(row)
                    .map(|(f, v)| one_value_array(f.field_type, v))
                    .collect();
                RecordBatch::try_new(Arc::clone(schema.arrow_schema()), columns).unwrap()
            })
            .collect();
        arrow_select::concat::concat_batches(schema.arrow_schema(), &batches).unwrap()
    }

    fn key_columns(schema: &DatasetSchema, batch: &RecordBatch) -> Vec<ArrayRef> {
        schema
            .primary_key
            .iter()
            .map(|&c| Arc::clone(batch.column(c)))
            .collect()
    }

    #[test]
    fn stored_values_leave_the_key_out_and_round_trip() {
        let schema = keyed_by_period_and_well();
        let rows = [
            vec![
                Value::Integer(7),
                Value::Integer(i64::MIN),
                Value::String("näme, \"quoted\"".into()),
                Value::Timestamp(1_600_000_000_000_000),
                Value::Float(2.5),
                Value::Null,
                Value::Boolean(false),
                Value::Json("{\"a\":[1,2]}".into()),
                Value::Date(-719_000),
            ],
            vec![
                Value::Integer(i64::MAX),
                Value::Integer(-1),
                Value::String("x".repeat(300)),
                Value::Timestamp(-1),
                Value::Null,
                Value::String("n".into()),
                Value::Boolean(true),
                Value::Null,
                Value::Null,
            ],
            vec![
                Value::Integer(0),
                Value::Integer(i64::MAX),
                Value::Null,
                Value::Timestamp(0),
                Value::Float(-0.0),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Date(i32::MAX),
            ],
        ];
        let batch = batch_of(&schema, &rows);
        let values = encode_values(&schema, &batch).unwrap();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let keys = key_columns(&schema, &batch);
        assert_eq!(decode_values(&schema, &keys, &refs).unwrap(), batch);

        // the key is not in the value: the same record under another key stores the same bytes
        let mut moved = rows.clone();
        moved[0][0] = Value::Integer(8);
        moved[0][3] = Value::Timestamp(1_700_000_000_000_000);
        let moved = encode_values(&schema, &batch_of(&schema, &moved)).unwrap();
        assert_eq!(moved[0], values[0]);
        // and it is smaller than the journal's whole record by more than the two key fields
        let whole = encode_rows(&schema, &batch).unwrap();
        for (value, whole) in values.iter().zip(&whole) {
            assert!(
                value.len() + 2 * 9 < whole.len(),
                "{value:?} against {whole:?}"
            );
        }

        // a value cut short, or with bytes past its fields, is refused
        let first = key_columns(&schema, &batch.slice(0, 1));
        let cut = &values[0][..values[0].len() - 1];
        assert!(decode_values(&schema, &first, &[cut]).is_err());
        let mut longer = values[0].clone();
        longer.push(0);
        assert!(decode_values(&schema, &first, &[&longer]).is_err());
    }

    #[test]
    fn varints_round_trip_at_the_extremes() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(v));
            let mut bytes = out.as_slice();
            assert_eq!(unzigzag(varint(&mut bytes).unwrap()), v);
            assert!(bytes.is_empty());
            assert!(out.len() <= 10);
        }
        let mut small = Vec::new();
        put_varint(&mut small, zigzag(-31));
        assert_eq!(small.len(), 1, "small numbers take one byte");
        let too_long = [0x80u8; 11];
        assert!(varint(&mut too_long.as_slice()).is_err());
    }
}
