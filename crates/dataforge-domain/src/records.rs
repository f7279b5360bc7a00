//! Turning JSON records into Arrow record batches shaped by a dataset schema. Values go straight
//! into typed column builders; a bad value is reported with its row and field and stored as null,
//! so positions stay aligned and the columnar validator can run over the whole batch.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};

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

/// A batch decoded from JSON records, with what the decoder already found wrong.
pub struct DecodedBatch {
    pub batch: RecordBatch,
    pub violations: Violations,
    pub rejected: RejectedCells,
}

/// Decodes JSON objects into one batch with the schema's columns. Missing fields take their
/// default (or null); unknown fields and non-objects are violations. `first_row` is the 1-based
/// request position of `rows[0]`.
pub fn decode_json_rows(
    schema: &DatasetSchema,
    rows: &[serde_json::Value],
    first_row: u64,
) -> Result<DecodedBatch, arrow_schema::ArrowError> {
    let mut columns: Vec<ColumnBuilder> = schema
        .fields
        .iter()
        .map(|f| ColumnBuilder::new(f.field_type, rows.len()))
        .collect();
    let mut violations = Violations::default();
    let mut rejected = RejectedCells::default();
    let mut present = vec![false; schema.fields.len()];
    for (i, row) in rows.iter().enumerate() {
        let row_number = first_row + i as u64;
        present.fill(false);
        if let serde_json::Value::Object(object) = row {
            for (key, json) in object {
                let Some(col) = schema.field_index(key) else {
                    violations.push(Violation {
                        row: row_number,
                        field: Some(key.clone()),
                        code: "unknown_field",
                        message: format!(
                            "`{key}` is not a field of {}; fields are: {}",
                            schema.name,
                            schema.field_names()
                        ),
                    });
                    continue;
                };
                present[col] = true;
                let field = &schema.fields[col];
                if let Err(e) = columns[col].append_json(field.field_type, json) {
                    rejected.mark(col, i);
                    violations.push(Violation {
                        row: row_number,
                        field: Some(field.name.clone()),
                        code: e.code,
                        message: e.message,
                    });
                }
            }
        } else {
            violations.push(Violation {
                row: row_number,
                field: None,
                code: "not_an_object",
                message: "each record must be a JSON object".to_owned(),
            });
            for col in 0..schema.fields.len() {
                rejected.mark(col, i);
            }
        }
        for (col, field) in schema
            .fields
            .iter()
            .enumerate()
            .filter(|&(col, _)| !present[col])
        {
            match &field.default {
                Some(default) => columns[col].append(default),
                None => columns[col].append_null(),
            }
        }
    }
    let arrays: Vec<ArrayRef> = columns.iter_mut().map(ColumnBuilder::finish).collect();
    let batch = RecordBatch::try_new(Arc::clone(schema.arrow_schema()), arrays)?;
    Ok(DecodedBatch {
        batch,
        violations,
        rejected,
    })
}
