//! Turning a JSON body (one object or an array of objects) into an Arrow record batch shaped by a
//! dataset schema. The body is read with serde straight into typed column builders: no document
//! tree and no per-row object is built. A bad value is reported with its row and field and stored as
//! null, so positions stay aligned and the columnar validator can run over the whole batch.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::schema::DatasetSchema;
use crate::validate::{RejectedCells, Violation, Violations};
use crate::value::{FieldType, Value, ValueError};

/// One typed Arrow column under construction.
enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: FieldType, capacity: usize) -> Self {
        match ty {
            FieldType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            FieldType::Integer => ColumnBuilder::Integer(Int64Builder::with_capacity(capacity)),
            FieldType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            FieldType::String | FieldType::Json => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            FieldType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
        }
    }

    fn append(&mut self, value: &Value) {
        match (self, value) {
            (ColumnBuilder::Boolean(b), Value::Boolean(v)) => b.append_value(*v),
            (ColumnBuilder::Integer(b), Value::Integer(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Value::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Text(b), Value::String(v) | Value::Json(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Value::Date(v)) => b.append_value(*v),
            (ColumnBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(*v),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Integer(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
        }
    }

    /// Appends a JSON value, borrowing strings rather than copying them where the type allows.
    fn append_json(&mut self, ty: FieldType, json: &serde_json::Value) -> Result<(), ValueError> {
        match (&mut *self, json) {
            (_, serde_json::Value::Null) => self.append_null(),
            (ColumnBuilder::Text(b), serde_json::Value::String(s)) if ty == FieldType::String => {
                b.append_value(s)
            }
            (ColumnBuilder::Integer(b), serde_json::Value::Number(n)) if n.as_i64().is_some() => {
                b.append_value(n.as_i64().unwrap_or_default())
            }
            _ => match Value::from_json(ty, json) {
                Ok(value) => self.append(&value),
                Err(e) => {
                    self.append_null();
                    return Err(e);
                }
            },
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Integer(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// A batch decoded from a request, with what the decoder already found wrong.
pub struct DecodedBatch {
    pub batch: RecordBatch,
    pub violations: Violations,
    pub rejected: RejectedCells,
}

/// Why a JSON body could not be read at all (as opposed to a record being invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body must be a JSON object or an array of objects")]
    Shape,
    #[error("the request holds no records")]
    Empty,
    #[error("cannot assemble the record batch: {0}")]
    Batch(String),
}

/// The formats a request body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object or an array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl BodyFormat {
    /// Decodes a body of this format into one batch with the schema's columns.
    pub fn decode(
        self,
        schema: &DatasetSchema,
        body: &[u8],
        first_row: u64,
    ) -> Result<DecodedBatch, BodyError> {
        match self {
            BodyFormat::Json => decode_json(schema, body, first_row),
            BodyFormat::Ndjson => decode_ndjson(schema, body, first_row),
        }
    }
}

/// Decodes a JSON body (one object, or an array of objects) into one batch with the schema's
/// columns. Missing fields take their default (or null); unknown and repeated fields and
/// non-objects are violations. `first_row` is the 1-based request position of the first record.
pub fn decode_json(
    schema: &DatasetSchema,
    body: &[u8],
    first_row: u64,
) -> Result<DecodedBatch, BodyError> {
    let body = std::str::from_utf8(body)
        .map_err(|e| BodyError::Syntax(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    match body.bytes().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => {}
        _ => {
            return Err(match serde_json::from_str::<IgnoredAny>(body) {
                Ok(_) => BodyError::Shape,
                Err(e) => BodyError::Syntax(e.to_string()),
            });
        }
    }
    let mut decoder = Decoder::new(schema, first_row);
    let mut reader = serde_json::Deserializer::from_str(body);
    Body(&mut decoder)
        .deserialize(&mut reader)
        .map_err(|e| BodyError::Syntax(e.to_string()))?;
    reader.end().map_err(|e| BodyError::Syntax(e.to_string()))?;
    if decoder.rows == 0 {
        return Err(BodyError::Empty);
    }
    decoder
        .finish()
        .map_err(|e| BodyError::Batch(e.to_string()))
}

/// Decodes an NDJSON body (one JSON object per line; blank lines are ignored) into one batch. A
/// line that is not valid JSON is a `malformed_json` violation of its record, so the other
/// records can still be checked (and, with `on_error=skip`, written).
pub fn decode_ndjson(
    schema: &DatasetSchema,
    body: &[u8],
    first_row: u64,
) -> Result<DecodedBatch, BodyError> {
    let body = std::str::from_utf8(body)
        .map_err(|e| BodyError::Syntax(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut decoder = Decoder::new(schema, first_row);
    for line in body.split('\n') {
        if line.trim().is_empty() {
            continue;
        }
        let before = decoder.rows;
        let mut reader = serde_json::Deserializer::from_str(line);
        let read = Record(&mut decoder)
            .deserialize(&mut reader)
            .and_then(|()| reader.end());
        if let Err(e) = read {
            if decoder.rows == before {
                decoder.end_row(); // complete the half-read record so columns stay aligned
            }
            decoder.reject_row(
                before,
                "malformed_json",
                format!("the line is not valid JSON: {e}"),
            );
        }
    }
    if decoder.rows == 0 {
        return Err(BodyError::Empty);
    }
    decoder
        .finish()
        .map_err(|e| BodyError::Batch(e.to_string()))
}

/// Column builders and findings for the records read so far.
struct Decoder<'s> {
    schema: &'s DatasetSchema,
    columns: Vec<ColumnBuilder>,
    present: Vec<bool>,
    violations: Violations,
    rejected: RejectedCells,
    rows: usize,
    first_row: u64,
}

impl<'s> Decoder<'s> {
    fn new(schema: &'s DatasetSchema, first_row: u64) -> Self {
        Decoder {
            schema,
            columns: schema
                .fields
                .iter()
                .map(|f| ColumnBuilder::new(f.field_type, 1024))
                .collect(),
            present: vec![false; schema.fields.len()],
            violations: Violations::default(),
            rejected: RejectedCells::default(),
            rows: 0,
            first_row,
        }
    }

    fn row_number(&self) -> u64 {
        self.first_row + self.rows as u64
    }

    fn report(&mut self, field: Option<String>, code: &'static str, message: String) {
        let row = self.row_number();
        self.violations.push(Violation {
            row,
            field,
            code,
            message,
        });
    }

    /// Fills the fields the record left out, and moves to the next row.
    fn end_row(&mut self) {
        for (col, field) in self.schema.fields.iter().enumerate() {
            if !self.present[col] {
                match &field.default {
                    Some(default) => self.columns[col].append(default),
                    None => self.columns[col].append_null(),
                }
            }
        }
        self.present.fill(false);
        self.rows += 1;
    }

    fn not_an_object(&mut self) {
        self.reject_row(
            self.rows,
            "not_an_object",
            "each record must be a JSON object".to_owned(),
        );
        self.end_row();
    }

    /// Reports a whole record (0-based position `index`) as broken, so no cell of it is reported again.
    fn reject_row(&mut self, index: usize, code: &'static str, message: String) {
        let row = self.first_row + index as u64;
        self.violations.push(Violation {
            row,
            field: None,
            code,
            message,
        });
        for col in 0..self.columns.len() {
            self.rejected.mark(col, index);
        }
    }

    fn finish(mut self) -> Result<DecodedBatch, arrow_schema::ArrowError> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(self.schema.arrow_schema()), arrays)?;
        Ok(DecodedBatch {
            batch,
            violations: self.violations,
            rejected: self.rejected,
        })
    }
}

/// The whole body: one record or an array of records.
struct Body<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Body<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Record(self.0).visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One element of the body's array; anything but an object is a `not_an_object` violation.
struct Record<'d, 's>(&'d mut Decoder<'s>);

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.0;
        while let Some(key) = map.next_key_seed(FieldKey(decoder.schema))? {
            match key {
                Key::Known(col) if decoder.present[col] => {
                    map.next_value::<IgnoredAny>()?;
                    let name = decoder.schema.fields[col].name.clone();
                    let message = format!("`{name}` appears more than once in the record");
                    decoder.report(Some(name), "duplicate_field", message);
                }
                Key::Known(col) => {
                    let ty = decoder.schema.fields[col].field_type;
                    let column = &mut decoder.columns[col];
                    let cell = map.next_value_seed(Cell { column, ty })?;
                    // marked only once the value is in its column: a record cut short by a syntax
                    // error is completed with defaults, so columns stay aligned
                    decoder.present[col] = true;
                    if let Err(e) = cell {
                        decoder.rejected.mark(col, decoder.rows);
                        decoder.report(
                            Some(decoder.schema.fields[col].name.clone()),
                            e.code,
                            e.message,
                        );
                    }
                }
                Key::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    let message = format!(
                        "`{name}` is not a field of {}; fields are: {}",
                        decoder.schema.name,
                        decoder.schema.field_names()
                    );
                    decoder.report(Some(name), "unknown_field", message);
                }
            }
        }
        decoder.end_row();
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.0.not_an_object();
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.not_an_object();
        Ok(())
    }
}

/// A record's key, resolved to a field position without copying known names.
enum Key {
    Known(usize),
    Unknown(String),
}

struct FieldKey<'s>(&'s DatasetSchema);

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match self.0.field_index(name) {
            Some(col) => Key::Known(col),
            None => Key::Unknown(name.to_owned()),
        })
    }
}

/// One value, appended to its column; a value that does not fit the type is an `Err` inside `Ok`,
/// so reading goes on and every problem is reported.
struct Cell<'c> {
    column: &'c mut ColumnBuilder,
    ty: FieldType,
}

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = Result<(), ValueError>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.ty == FieldType::Json {
            let json = serde_json::Value::deserialize(deserializer)?;
            return Ok(self.column.append_json(self.ty, &json));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = Result<(), ValueError>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} value", self.ty)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.column.append_null();
        Ok(Ok(()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match (&mut *self.column, self.ty) {
            (ColumnBuilder::Text(b), FieldType::String) => {
                b.append_value(v);
                Ok(())
            }
            (_, FieldType::Date | FieldType::Timestamp) => match Value::parse_text(self.ty, v) {
                Ok(value) => {
                    self.column.append(&value);
                    Ok(())
                }
                Err(e) => {
                    self.column.append_null();
                    Err(e)
                }
            },
            _ => self
                .column
                .append_json(self.ty, &serde_json::Value::String(v.to_owned())),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Array(Vec::new())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Object(serde_json::Map::new())))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::wells;

    #[test]
    fn one_object_or_an_array() {
        let schema = wells();
        let one = decode_json(&schema, br#"{"well_code": 1, "name": "a\"b"}"#, 1).unwrap();
        assert_eq!(one.batch.num_rows(), 1);
        assert_eq!(
            Value::from_array(FieldType::String, one.batch.column(2), 0),
            Value::String("a\"b".into())
        );
        let many = decode_json(
            &schema,
            json!([{"well_code": 1}, {"well_code": 2, "extra": [1, {"a": null}]}])
                .to_string()
                .as_bytes(),
            1,
        )
        .unwrap();
        assert_eq!(many.batch.num_rows(), 2);
        assert!(many.violations.is_empty());
        assert_eq!(
            Value::from_array(FieldType::Json, many.batch.column(7), 1),
            Value::Json(r#"[1,{"a":null}]"#.into())
        );
    }

    #[test]
    fn body_level_errors() {
        let schema = wells();
        assert_eq!(decode_json(&schema, b"[]", 1).err(), Some(BodyError::Empty));
        assert_eq!(
            decode_json(&schema, b" \"text\"", 1).err(),
            Some(BodyError::Shape)
        );
        assert_eq!(decode_json(&schema, b"42", 1).err(), Some(BodyError::Shape));
        assert!(matches!(
            decode_json(&schema, b"[{\"well_code\": 1}", 1),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(
            decode_json(&schema, b"{} {}", 1),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(
            decode_json(&schema, b"nope", 1),
            Err(BodyError::Syntax(_))
        ));
        assert!(matches!(
            decode_json(&schema, b"[{\"name\": \"\xff\"}]", 1),
            Err(BodyError::Syntax(_))
        ));
        let hidden = decode_json(&schema, b"[{\"ghost\": \"\xff\"}]", 1).err();
        assert_eq!(
            hidden,
            Some(BodyError::Syntax("invalid UTF-8 at byte 12".into()))
        );
    }

    #[test]
    fn ndjson_reports_malformed_lines_and_keeps_the_rest() {
        let schema = wells();
        let body = b"{\"well_code\": 1}\n\n{\"well_code\": 2, \"name\": \r\n[3]\n{\"well_code\": 4} trailing\n{\"well_code\": 5}";
        let decoded = decode_ndjson(&schema, body, 1).unwrap();
        assert_eq!(decoded.batch.num_rows(), 5);
        let found: Vec<(u64, &str)> = decoded
            .violations
            .into_listed()
            .iter()
            .map(|v| (v.row, v.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (2, "malformed_json"),
                (3, "not_an_object"),
                (4, "malformed_json")
            ]
        );
        assert_eq!(
            Value::from_array(FieldType::Integer, decoded.batch.column(0), 4),
            Value::Integer(5)
        );
        assert_eq!(
            decode_ndjson(&schema, b"\n \n", 1).err(),
            Some(BodyError::Empty)
        );
    }

    #[test]
    fn repeated_fields_keep_rows_aligned() {
        let schema = wells();
        let decoded = decode_json(
            &schema,
            br#"[{"well_code": 1, "well_code": 2}, {"well_code": 3}]"#,
            1,
        )
        .unwrap();
        assert_eq!(decoded.batch.num_rows(), 2);
        let listed = decoded.violations.into_listed();
        assert_eq!((listed[0].row, listed[0].code), (1, "duplicate_field"));
        assert_eq!(
            Value::from_array(FieldType::Integer, decoded.batch.column(0), 1),
            Value::Integer(3)
        );
    }
}
