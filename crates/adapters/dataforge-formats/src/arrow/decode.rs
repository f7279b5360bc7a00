//! Arrow IPC stream bodies, and the step Arrow and Parquet input share: matching columns to
//! fields by name and converting them to the schema's types where that loses nothing.

use std::io::Read;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Schema, TimeUnit};
use dataforge_domain::records::{BodyError, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::validate::{RejectedCells, Violation, Violations};
use dataforge_domain::value::FieldType;

use super::limits::BoundedIpc;
use crate::columns::ColumnBuilder;
use crate::untrusted::guarded;

/// Most rows one input record batch (Arrow, or a Parquet reader's) may declare.
const MAX_INPUT_BATCH_ROWS: usize = 16 * 1024 * 1024;

/// Decodes an Arrow IPC stream, one decoded batch per incoming batch (split to `batch_rows`).
pub(crate) fn decode(
    schema: &DatasetSchema,
    _options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let not_arrow =
        |why: String| BodyError::Malformed(format!("the body is not an Arrow IPC stream: {why}"));
    let reader = guarded(|| {
        arrow_ipc::reader::StreamReader::try_new(
            BoundedIpc::new(std::io::BufReader::with_capacity(256 * 1024, body)),
            None,
        )
    })
    .map_err(not_arrow)?
    .map_err(|e| not_arrow(e.to_string()))?;
    let conformer = Conformer::new(schema, &reader.schema())?;
    conformer.consume(reader, batch_rows, sink, |done, e| {
        format!("the Arrow stream is malformed or truncated after {done} complete record(s): {e}")
    })
}

/// Turns input batches into batches shaped as the dataset schema.
pub(crate) struct Conformer<'s> {
    schema: &'s DatasetSchema,
    /// For each schema field, the input column that feeds it, if any.
    sources: Vec<Option<usize>>,
    /// Records handed over so far.
    done: u64,
}

impl<'s> Conformer<'s> {
    /// Matches input columns (name and type) to fields, refusing unknown columns and types that do
    /// not convert losslessly, every one at once.
    pub(crate) fn new(schema: &'s DatasetSchema, input: &Schema) -> Result<Self, BodyError> {
        let columns = input
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()));
        let mut sources = vec![None; schema.fields.len()];
        let mut problems = Vec::new();
        for (index, (name, data_type)) in columns.enumerate() {
            let Some(col) = schema.field_index(&name) else {
                problems.push(column_problem(
                    &name,
                    "unknown_field",
                    format!(
                        "`{name}` is not a field of {}; fields are: {}",
                        schema.name,
                        schema.field_names()
                    ),
                ));
                continue;
            };
            if sources[col].is_some() {
                problems.push(column_problem(
                    &name,
                    "duplicate_field",
                    format!("column `{name}` appears twice"),
                ));
                continue;
            }
            let ty = schema.fields[col].field_type;
            if !converts_losslessly(&data_type, ty) {
                problems.push(column_problem(
                    &name,
                    "column_type",
                    format!("column `{name}` has type {data_type}, which does not convert losslessly to {ty} ({})", ty.arrow_type()),
                ));
                continue;
            }
            sources[col] = Some(index);
        }
        if !problems.is_empty() {
            return Err(BodyError::Columns(problems));
        }
        Ok(Conformer {
            schema,
            sources,
            done: 0,
        })
    }

    /// Conforms one input batch in slices of at most `batch_rows`: a column the input lacks is
    /// made (nulls or the default) for a slice at a time, since a batch may declare any number of
    /// rows without a byte of column data (no columns, or columns of type null).
    fn push(
        &mut self,
        input: &RecordBatch,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<(), BodyError> {
        if input.num_rows() > MAX_INPUT_BATCH_ROWS {
            return Err(BodyError::Malformed(format!(
                "a record batch declares {} rows, more than the {MAX_INPUT_BATCH_ROWS} one batch may hold; write the file with smaller batches",
                input.num_rows()
            )));
        }
        let mut offset = 0;
        while offset < input.num_rows() {
            let length = batch_rows.min(input.num_rows() - offset);
            self.push_slice(&input.slice(offset, length), sink)?;
            offset += length;
        }
        Ok(())
    }

    /// Conforms a slice of an input batch and hands it over.
    fn push_slice(
        &mut self,
        input: &RecordBatch,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    ) -> Result<(), BodyError> {
        let rows = input.num_rows();
        let mut violations = Violations::default();
        let mut rejected = RejectedCells::default();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields.len());
        for (col, field) in self.schema.fields.iter().enumerate() {
            let column = match self.sources[col] {
                Some(index) => {
                    let array = input.column(index);
                    let target = field.field_type.arrow_type();
                    let converted = if array.data_type() == &target {
                        Arc::clone(array)
                    } else {
                        arrow_cast::cast(array, &target)
                            .map_err(|e| BodyError::Batch(e.to_string()))?
                    };
                    if field.field_type == FieldType::Json {
                        check_json(
                            &converted,
                            col,
                            &field.name,
                            self.done + 1,
                            &mut violations,
                            &mut rejected,
                        );
                    }
                    converted
                }
                None => match &field.default {
                    Some(default) => {
                        let mut builder = ColumnBuilder::new(field, rows);
                        for _ in 0..rows {
                            builder.append(default);
                        }
                        builder.finish()
                    }
                    None => new_null_array(&field.field_type.arrow_type(), rows),
                },
            };
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::clone(self.schema.arrow_schema()), columns)
            .map_err(|e| BodyError::Batch(e.to_string()))?;
        let first_row = self.done + 1;
        self.done += rows as u64;
        sink(DecodedBatch {
            batch,
            first_row,
            violations,
            rejected,
        })
        .map_err(|Halt| BodyError::Halted)
    }

    /// Conforms every input batch in turn; `describe` words a read error, given the records
    /// handed over before it.
    pub(crate) fn consume<E>(
        mut self,
        batches: impl IntoIterator<Item = Result<RecordBatch, E>>,
        batch_rows: usize,
        sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
        describe: impl Fn(u64, E) -> String,
    ) -> Result<u64, BodyError> {
        let mut batches = batches.into_iter();
        // each batch read from the file is validated by its reader, unless the reader panics
        while let Some(batch) = guarded(|| batches.next()).map_err(|why| {
            BodyError::Malformed(format!(
                "the file is corrupt after {} record(s): {why}",
                self.done
            ))
        })? {
            let batch = batch.map_err(|e| BodyError::Malformed(describe(self.done, e)))?;
            self.push(&batch, batch_rows, sink)?;
        }
        if self.done == 0 {
            return Err(BodyError::Empty);
        }
        Ok(self.done)
    }
}

fn column_problem(name: &str, code: &'static str, message: String) -> Violation {
    Violation {
        row: 0,
        field: Some(name.to_owned()),
        code,
        message,
    }
}

/// Whether values of `from` become values of field type `to` with nothing lost.
fn converts_losslessly(from: &DataType, to: FieldType) -> bool {
    use DataType as D;
    if let D::Dictionary(_, values) = from {
        // decoded to its values: nothing is lost
        return converts_losslessly(values, to);
    }
    match to {
        FieldType::String | FieldType::Json => matches!(from, D::Utf8 | D::LargeUtf8 | D::Utf8View),
        FieldType::Integer => matches!(
            from,
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32
        ),
        FieldType::Float => matches!(
            from,
            D::Float16
                | D::Float32
                | D::Float64
                | D::Int8
                | D::Int16
                | D::Int32
                | D::UInt8
                | D::UInt16
                | D::UInt32
        ),
        FieldType::Boolean => matches!(from, D::Boolean),
        FieldType::Date => matches!(from, D::Date32),
        FieldType::Timestamp => {
            matches!(
                from,
                D::Date32
                    | D::Timestamp(
                        TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond,
                        _
                    )
            )
        }
    }
}

/// A json field's text must be a JSON document.
fn check_json(
    array: &ArrayRef,
    col: usize,
    name: &str,
    first_row: u64,
    violations: &mut Violations,
    rejected: &mut RejectedCells,
) {
    let Some(texts) = array.as_string_opt::<i32>() else {
        return;
    };
    for (row, text) in texts.iter().enumerate() {
        if let Some(text) = text
            && let Err(e) = serde_json::from_str::<serde_json::Value>(text)
        {
            rejected.mark(col, row);
            violations.push(Violation {
                row: first_row + row as u64,
                field: Some(name.to_owned()),
                code: "type",
                message: format!("expected a JSON document, found invalid JSON: {e}"),
            });
        }
    }
}
