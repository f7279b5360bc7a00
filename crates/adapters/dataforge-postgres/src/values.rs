//! Domain values to and from PostgreSQL's binary format, and rows to Arrow columns. Written by hand
//! for the six field types so that neither side goes through chrono or text: a timestamp is
//! microseconds and a date days, from 2000-01-01 in PostgreSQL and from 1970-01-01 here.

use std::error::Error;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use bytes::{BufMut, BytesMut};
use dataforge_domain::query::OutputColumn;
use dataforge_domain::value::{FieldType, Value};
use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::Row;

type BoxError = Box<dyn Error + Sync + Send>;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub(crate) const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub(crate) const EPOCH_MICROS: i64 = EPOCH_DAYS as i64 * 86_400_000_000;

/// The column type storing a field type.
pub(crate) fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String | FieldType::Json => "TEXT",
        FieldType::Integer => "BIGINT",
        FieldType::Float => "DOUBLE PRECISION",
        FieldType::Boolean => "BOOLEAN",
        FieldType::Date => "DATE",
        FieldType::Timestamp => "TIMESTAMP",
    }
}

/// A domain value as a parameter of whatever type PostgreSQL asks for: the SQL binds a value
/// against a column (or a cast), so the server, not the value, decides the type.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = || -> BoxError { format!("{:?} cannot be sent as {ty}", self.0).into() };
        match (self.0, ty) {
            (Value::Null, _) => return Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => out.put_i64(*i),
            (Value::Integer(i), &Type::INT4) => out.put_i32(i32::try_from(*i)?),
            (Value::Integer(i), &Type::INT2) => out.put_i16(i16::try_from(*i)?),
            (Value::Integer(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (Value::Float(f), &Type::FLOAT8) => out.put_f64(*f),
            (Value::Float(f), &Type::FLOAT4) => out.put_f32(*f as f32),
            (Value::Boolean(b), &Type::BOOL) => out.put_u8(u8::from(*b)),
            (Value::Date(d), &Type::DATE) => out.put_i32(d - EPOCH_DAYS),
            (Value::Timestamp(t), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => {
                out.put_i64(t - EPOCH_MICROS)
            }
            (Value::String(s) | Value::Json(s), _) if is_text(ty) => out.put_slice(s.as_bytes()),
            (Value::Json(s), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(s.as_bytes());
            }
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON
    )
}

/// One cell read back, of any column type a read answers with.
pub(crate) enum Cell<'a> {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(&'a str),
    Days(i32),
    Micros(i64),
}

impl<'a> FromSql<'a> for Cell<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes = |n: usize| -> Result<&'a [u8], BoxError> {
            raw.get(..n)
                .ok_or_else(|| format!("a {ty} value of {} bytes", raw.len()).into())
        };
        Ok(match *ty {
            Type::INT8 => Cell::Integer(i64::from_be_bytes(bytes(8)?.try_into()?)),
            Type::INT4 => Cell::Integer(i32::from_be_bytes(bytes(4)?.try_into()?).into()),
            Type::INT2 => Cell::Integer(i16::from_be_bytes(bytes(2)?.try_into()?).into()),
            Type::FLOAT8 => Cell::Float(f64::from_be_bytes(bytes(8)?.try_into()?)),
            Type::FLOAT4 => Cell::Float(f32::from_be_bytes(bytes(4)?.try_into()?).into()),
            Type::BOOL => Cell::Boolean(bytes(1)?[0] != 0),
            Type::DATE => Cell::Days(i32::from_be_bytes(bytes(4)?.try_into()?) + EPOCH_DAYS),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                Cell::Micros(i64::from_be_bytes(bytes(8)?.try_into()?) + EPOCH_MICROS)
            }
            _ if is_text(ty) => Cell::Text(std::str::from_utf8(raw)?),
            _ => return Err(format!("a column of type {ty} cannot be read").into()),
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl Cell<'_> {
    /// The domain value of a field of type `ty` this cell holds.
    pub(crate) fn value(self, ty: FieldType) -> Value {
        match (self, ty) {
            (Cell::Integer(i), FieldType::Float) => Value::Float(i as f64),
            (Cell::Integer(i), _) => Value::Integer(i),
            (Cell::Float(f), _) => Value::Float(f),
            (Cell::Boolean(b), _) => Value::Boolean(b),
            (Cell::Text(s), FieldType::Json) => Value::Json(s.to_owned()),
            (Cell::Text(s), _) => Value::String(s.to_owned()),
            (Cell::Days(d), _) => Value::Date(d),
            (Cell::Micros(t), _) => Value::Timestamp(t),
        }
    }
}

/// A builder of one Arrow column of a field type.
enum Column {
    Integer(Int64Builder),
    Float(Float64Builder),
    Boolean(BooleanBuilder),
    Text(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(ty: FieldType, capacity: usize) -> Column {
        match ty {
            FieldType::Integer => Column::Integer(Int64Builder::with_capacity(capacity)),
            FieldType::Float => Column::Float(Float64Builder::with_capacity(capacity)),
            FieldType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(capacity)),
            FieldType::String | FieldType::Json => {
                Column::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Date => Column::Date(Date32Builder::with_capacity(capacity)),
            FieldType::Timestamp => {
                Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
        }
    }

    fn append(&mut self, cell: Option<Cell<'_>>) -> Result<(), String> {
        match (self, cell) {
            (Column::Integer(b), Some(Cell::Integer(i))) => b.append_value(i),
            (Column::Integer(b), None) => b.append_null(),
            (Column::Float(b), Some(Cell::Float(f))) => b.append_value(f),
            (Column::Float(b), Some(Cell::Integer(i))) => b.append_value(i as f64),
            (Column::Float(b), None) => b.append_null(),
            (Column::Boolean(b), Some(Cell::Boolean(v))) => b.append_value(v),
            (Column::Boolean(b), None) => b.append_null(),
            (Column::Text(b), Some(Cell::Text(s))) => b.append_value(s),
            (Column::Text(b), None) => b.append_null(),
            (Column::Date(b), Some(Cell::Days(d))) => b.append_value(d),
            (Column::Date(b), Some(Cell::Micros(t))) => {
                b.append_value(t.div_euclid(86_400_000_000) as i32)
            }
            (Column::Date(b), None) => b.append_null(),
            (Column::Timestamp(b), Some(Cell::Micros(t))) => b.append_value(t),
            (Column::Timestamp(b), None) => b.append_null(),
            _ => return Err("a column answered a value of another type".into()),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Integer(mut b) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Boolean(mut b) => Arc::new(b.finish()),
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::Date(mut b) => Arc::new(b.finish()),
            Column::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows answered with `columns` (in order) as one record batch.
pub(crate) fn batch(columns: &[OutputColumn], rows: &[Row]) -> Result<RecordBatch, String> {
    let mut builders: Vec<Column> = columns
        .iter()
        .map(|c| Column::new(c.field_type, rows.len()))
        .collect();
    for row in rows {
        for (i, builder) in builders.iter_mut().enumerate() {
            let cell: Option<Cell<'_>> = row.try_get(i).map_err(|e| e.to_string())?;
            builder.append(cell)?;
        }
    }
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.field_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    );
    let arrays = builders.into_iter().map(Column::finish).collect();
    RecordBatch::try_new(Arc::new(schema), arrays).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_move_to_the_2000_epoch_and_back() {
        let mut out = BytesMut::new();
        Param(&Value::Date(EPOCH_DAYS + 3))
            .to_sql(&Type::DATE, &mut out)
            .unwrap();
        assert_eq!(&out[..], &3i32.to_be_bytes());
        match Cell::from_sql(&Type::DATE, &3i32.to_be_bytes()).unwrap() {
            Cell::Days(d) => assert_eq!(d, EPOCH_DAYS + 3),
            _ => panic!("not a date"),
        }
        let mut out = BytesMut::new();
        Param(&Value::Timestamp(0))
            .to_sql(&Type::TIMESTAMP, &mut out)
            .unwrap();
        assert_eq!(&out[..], &(-EPOCH_MICROS).to_be_bytes());
        let mut out = BytesMut::new();
        assert!(
            Param(&Value::Boolean(true))
                .to_sql(&Type::INT8, &mut out)
                .is_err()
        );
        assert!(matches!(
            Param(&Value::Null).to_sql(&Type::INT8, &mut out),
            Ok(IsNull::Yes)
        ));
    }
}
