//! Typed Arrow column builders for one dataset, and the row bookkeeping every decoder shares:
//! defaults for missing fields, reported cells, and cutting the stream into bounded batches.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use dataforge_domain::records::{BodyError, DecodedBatch, Halt};
use dataforge_domain::schema::{DatasetSchema, FieldSchema};
use dataforge_domain::timestamps::TimestampInput;
use dataforge_domain::validate::{RejectedCells, Violation, Violations};
use dataforge_domain::value::{FieldType, Value, ValueError, compact_json};

/// One typed Arrow column under construction.
pub(crate) enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Date(Date32Builder),
    /// With how the field reads local times and numbers (its `timezone` and `epoch`).
    Timestamp(TimestampMicrosecondBuilder, TimestampInput),
}

impl ColumnBuilder {
    pub(crate) fn new(field: &FieldSchema, capacity: usize) -> Self {
        match field.field_type {
            FieldType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            FieldType::Integer => ColumnBuilder::Integer(Int64Builder::with_capacity(capacity)),
            FieldType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            FieldType::String | FieldType::Json => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            FieldType::Timestamp => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                field.timestamps,
            ),
        }
    }

    pub(crate) fn append(&mut self, value: &Value) {
        match (self, value) {
            (ColumnBuilder::Boolean(b), Value::Boolean(v)) => b.append_value(*v),
            (ColumnBuilder::Integer(b), Value::Integer(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Value::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Text(b), Value::String(v) | Value::Json(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Value::Date(v)) => b.append_value(*v),
            (ColumnBuilder::Timestamp(b, _), Value::Timestamp(v)) => b.append_value(*v),
            (builder, _) => builder.append_null(),
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Integer(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b, _) => b.append_null(),
        }
    }

    /// Appends a JSON value, borrowing strings rather than copying them where the type allows.
    pub(crate) fn append_json(
        &mut self,
        ty: FieldType,
        json: &serde_json::Value,
    ) -> Result<(), ValueError> {
        match (&mut *self, json) {
            (_, serde_json::Value::Null) => self.append_null(),
            (ColumnBuilder::Text(b), serde_json::Value::String(s)) if ty == FieldType::String => {
                b.append_value(s)
            }
            (ColumnBuilder::Integer(b), serde_json::Value::Number(n)) if n.as_i64().is_some() => {
                b.append_value(n.as_i64().unwrap_or_default())
            }
            (ColumnBuilder::Timestamp(..), serde_json::Value::String(s)) => {
                return self.append_timestamp_text(s);
            }
            (ColumnBuilder::Timestamp(b, input), serde_json::Value::Number(n)) => {
                let read = input.read_number(n);
                b.append_option(read.as_ref().ok().copied());
                return read.map(|_| ());
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

    /// Appends the text of a JSON value to a `json` column as sent, less whitespace; `null` is
    /// null.
    pub(crate) fn append_raw_json(&mut self, text: &str) {
        match self {
            ColumnBuilder::Text(b) if text != "null" => b.append_value(compact_json(text)),
            _ => self.append_null(),
        }
    }

    /// Appends a value given as text (a CSV cell); an empty cell is null. A boolean may be spelled
    /// in any of the usual ways (see [`boolean`]).
    pub(crate) fn append_text(&mut self, ty: FieldType, text: &str) -> Result<(), ValueError> {
        match (&mut *self, ty) {
            (_, _) if text.is_empty() => self.append_null(),
            (ColumnBuilder::Text(b), FieldType::String) => b.append_value(text),
            (ColumnBuilder::Boolean(b), FieldType::Boolean) if boolean(text).is_some() => {
                b.append_option(boolean(text))
            }
            (ColumnBuilder::Timestamp(..), FieldType::Timestamp) => {
                return self.append_timestamp_text(text);
            }
            _ => match Value::parse_text(ty, text) {
                Ok(value) => self.append(&value),
                Err(e) => {
                    self.append_null();
                    return Err(e);
                }
            },
        }
        Ok(())
    }

    /// Appends a timestamp written as text, read as its field says (an offset always wins; a
    /// local time in the field's `timezone`; digits as its `epoch` units).
    pub(crate) fn append_timestamp_text(&mut self, text: &str) -> Result<(), ValueError> {
        match self {
            ColumnBuilder::Timestamp(b, input) => {
                let read = input.read_text(text);
                b.append_option(read.as_ref().ok().copied());
                read.map(|_| ())
            }
            other => {
                other.append_null();
                Err(ValueError::new("type", "not a timestamp column"))
            }
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Integer(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b, _) => Arc::new(b.finish()),
        }
    }
}

/// A boolean cell in one of the spellings spreadsheets and databases write: `true`/`false`, `t`/`f`,
/// `1`/`0`, `yes`/`no`, in any case. None of them can mean the other value, so all are taken.
fn boolean(text: &str) -> Option<bool> {
    const SPELLINGS: [(&str, bool); 8] = [
        ("true", true),
        ("false", false),
        ("t", true),
        ("f", false),
        ("1", true),
        ("0", false),
        ("yes", true),
        ("no", false),
    ];
    SPELLINGS
        .iter()
        .find(|(spelling, _)| spelling.eq_ignore_ascii_case(text))
        .map(|&(_, value)| value)
}

/// Column builders and findings for the records of the batch being built.
pub(crate) struct RowDecoder<'s> {
    pub(crate) schema: &'s DatasetSchema,
    pub(crate) columns: Vec<ColumnBuilder>,
    /// Fields the current record has given a value.
    pub(crate) present: Vec<bool>,
    violations: Violations,
    rejected: RejectedCells,
    /// Records in the batch being built.
    pub(crate) rows: usize,
    /// Request position (1-based) of the batch's first record.
    first_row: u64,
    batch_rows: usize,
    /// Records handed over in earlier batches.
    done: u64,
}

/// Rows the builders make room for at first; they grow (doubling) as records come, so a
/// one-record request, the commonest, allocates and the writer later frees room for a handful
/// (8 rather than 256 measured +5-30% single-record POSTs/s, alternating builds; a 64Ki-row batch
/// pays five more doublings per column).
const INITIAL_ROWS: usize = 8;

impl<'s> RowDecoder<'s> {
    pub(crate) fn new(schema: &'s DatasetSchema, batch_rows: usize) -> Self {
        RowDecoder {
            schema,
            columns: schema
                .fields
                .iter()
                .map(|f| ColumnBuilder::new(f, batch_rows.min(INITIAL_ROWS)))
                .collect(),
            present: vec![false; schema.fields.len()],
            violations: Violations::default(),
            rejected: RejectedCells::default(),
            rows: 0,
            first_row: 1,
            batch_rows,
            done: 0,
        }
    }

    /// Request position of the current record.
    pub(crate) fn row_number(&self) -> u64 {
        self.first_row + self.rows as u64
    }

    /// Reports a problem with the current record.
    pub(crate) fn report(&mut self, field: Option<String>, code: &'static str, message: String) {
        let row = self.row_number();
        self.violations.push(Violation {
            row,
            field,
            code,
            message,
        });
    }

    /// Reports a bad value of the current record, already stored as null.
    pub(crate) fn reject_cell(&mut self, col: usize, error: ValueError) {
        self.rejected.mark(col, self.rows);
        let field = self.schema.fields[col].name.clone();
        self.report(Some(field), error.code, error.message);
    }

    /// Fills the fields the record left out and moves to the next record.
    pub(crate) fn end_row(&mut self) {
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

    /// Reports a whole record (`index` in the batch) as broken, so no cell of it is reported again.
    pub(crate) fn reject_row(&mut self, index: usize, code: &'static str, message: String) {
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

    pub(crate) fn is_full(&self) -> bool {
        self.rows >= self.batch_rows
    }

    /// Hands the batch built so far to `sink` (if it holds any record) and starts the next.
    pub(crate) fn flush(
        &mut self,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<(), BodyError> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(self.schema.arrow_schema()), arrays)
            .map_err(|e| BodyError::Batch(e.to_string()))?;
        let decoded = DecodedBatch {
            batch,
            first_row: self.first_row,
            violations: std::mem::take(&mut self.violations),
            rejected: std::mem::take(&mut self.rejected),
        };
        self.first_row += self.rows as u64;
        self.done += self.rows as u64;
        self.rows = 0;
        sink(decoded).map_err(|Halt| BodyError::Halted)
    }

    /// Flushes the last batch; a body without records is an error.
    pub(crate) fn finish(
        mut self,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<u64, BodyError> {
        self.flush(sink)?;
        if self.done == 0 {
            return Err(BodyError::Empty);
        }
        Ok(self.done)
    }
}
