//! What every encoder is given: the answer's columns, which of them never hold null, and the Arrow
//! schema binary formats declare for them, so that other tools read exports right (timestamps
//! zoned in UTC, key and required fields non-nullable).

use std::io;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use dataforge_domain::query::OutputColumn;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::FieldType;

/// Why an answer could not be written whole.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Writing to the output failed (for a streamed answer: the client went or stalled).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A batch could not be had or encoded.
    #[error("{0}")]
    Failed(String),
}

impl EncodeError {
    pub(crate) fn failed(e: impl std::fmt::Display) -> Self {
        EncodeError::Failed(e.to_string())
    }
}

/// The time zone of every exported timestamp: stored values are instants in UTC.
pub const UTC: &str = "UTC";

/// An answer's columns, with the Arrow schema of its binary encodings.
#[derive(Debug, Clone)]
pub struct AnswerColumns {
    pub columns: Arc<[OutputColumn]>,
    pub schema: SchemaRef,
}

impl AnswerColumns {
    /// The columns of an answer read from `dataset`: a column that is a key or required field of it
    /// (same name and type) never holds null, and is declared so.
    pub fn new(columns: Arc<[OutputColumn]>, dataset: Option<&DatasetSchema>) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                Field::new(
                    &c.name,
                    exported_type(c.field_type),
                    !never_null(c, dataset),
                )
            })
            .collect();
        AnswerColumns {
            columns,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// A batch under the answer's schema (names, types and nullability as declared), recasting a
    /// column only where storage handed back another type.
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, EncodeError> {
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| conform_column(field.data_type(), column))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(EncodeError::failed)
    }
}

/// The Arrow type a field is exported as: its storage type, timestamps zoned in UTC.
pub fn exported_type(ty: FieldType) -> DataType {
    match ty {
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        other => other.arrow_type(),
    }
}

fn never_null(column: &OutputColumn, dataset: Option<&DatasetSchema>) -> bool {
    let Some(dataset) = dataset else {
        return false;
    };
    let key = |name: &str| dataset.key_fields().any(|f| f.name == name);
    dataset
        .field(&column.name)
        .is_some_and(|f| f.field_type == column.field_type && (f.required || key(&f.name)))
}

fn conform_column(to: &DataType, column: &ArrayRef) -> Result<ArrayRef, EncodeError> {
    if column.data_type() == to {
        return Ok(Arc::clone(column));
    }
    // a timestamp without a zone is the same instants: only the type is relabelled, no copy
    if let (DataType::Timestamp(TimeUnit::Microsecond, Some(zone)), Some(stamps)) = (
        to,
        column.as_any().downcast_ref::<TimestampMicrosecondArray>(),
    ) {
        return Ok(Arc::new(stamps.clone().with_timezone(zone.as_ref())));
    }
    arrow_cast::cast(column, to).map_err(EncodeError::failed)
}

/// An Arrow writer's error, as the output's own when it is one (the client went).
pub(crate) fn arrow_error(e: arrow_schema::ArrowError) -> EncodeError {
    match e {
        arrow_schema::ArrowError::IoError(_, io) => EncodeError::Io(io),
        other => EncodeError::failed(other),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Int64Array;
    use dataforge_domain::testing::wells;

    use super::*;

    fn column(name: &str, field_type: FieldType) -> OutputColumn {
        OutputColumn {
            name: name.into(),
            field_type,
        }
    }

    #[test]
    fn keys_and_required_fields_are_non_nullable_and_timestamps_utc() {
        let dataset = wells();
        let key = dataset.key_fields().next().unwrap().clone();
        let optional = dataset
            .fields
            .iter()
            .find(|f| !f.required && !dataset.key_fields().any(|k| k.name == f.name))
            .unwrap()
            .clone();
        let columns: Arc<[OutputColumn]> = Arc::from(vec![
            column(&key.name, key.field_type),
            column(&optional.name, optional.field_type),
            column("sum_of_something", FieldType::Float),
            column("at", FieldType::Timestamp),
        ]);
        let answer = AnswerColumns::new(Arc::clone(&columns), Some(&dataset));
        let nullable: Vec<bool> = answer
            .schema
            .fields()
            .iter()
            .map(|f| f.is_nullable())
            .collect();
        assert_eq!(nullable, [false, true, true, true]);
        assert_eq!(
            answer.schema.field(3).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        // without the dataset (or with another type) nothing is known never to be null
        let unknown = AnswerColumns::new(columns, None);
        assert!(unknown.schema.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn conform_relabels_timestamps_and_casts_other_types() {
        let columns: Arc<[OutputColumn]> = Arc::from(vec![
            column("at", FieldType::Timestamp),
            column("n", FieldType::Float),
        ]);
        let answer = AnswerColumns::new(columns, None);
        let input = RecordBatch::try_from_iter([
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ])
        .unwrap();
        let out = answer.conform(&input).unwrap();
        assert_eq!(out.schema(), answer.schema);
        let at = out
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!((at.value(0), at.is_null(1)), (1, true));
    }
}
