//! SQL text for datasets: quoting, column types and value binding. Names come from checked schemas
//! and are always quoted; values are always bound as parameters.

use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value};
use duckdb::types::{TimeUnit, Value as DuckValue};

pub(crate) use dataforge_sql::{column_list, quote};

use crate::select::DuckDbDialect;

/// The DuckDB column type storing a field type.
pub(crate) fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String | FieldType::Json => "VARCHAR",
        FieldType::Integer => "BIGINT",
        FieldType::Float => "DOUBLE",
        FieldType::Boolean => "BOOLEAN",
        FieldType::Date => "DATE",
        FieldType::Timestamp => "TIMESTAMP",
    }
}

/// `CREATE TABLE` for a dataset. No key constraint: the single writer enforces key uniqueness,
/// which keeps DuckDB's bulk appends free of index maintenance.
pub(crate) fn create_table(schema: &DatasetSchema) -> String {
    create_table_named(schema, &schema.name)
}

/// `CREATE TABLE` with a dataset's columns under another name.
pub(crate) fn create_table_named(schema: &DatasetSchema, name: &str) -> String {
    let columns: Vec<String> = schema
        .fields
        .iter()
        .map(|f| {
            let not_null = if f.required { " NOT NULL" } else { "" };
            format!(
                "{} {}{}",
                quote(&f.name),
                column_type(f.field_type),
                not_null
            )
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote(name),
        columns.join(", ")
    )
}

/// `DROP INDEX` statements for the DuckDB indexes earlier versions made of the declared secondary
/// indexes: those now live in the key index, and a DuckDB index would only slow writes down.
pub(crate) fn drop_legacy_indexes(schema: &DatasetSchema) -> Vec<String> {
    schema
        .indexes
        .iter()
        .map(|fields| {
            let names: Vec<&str> = fields
                .iter()
                .map(|&i| schema.fields[i].name.as_str())
                .collect();
            let index_name = format!("{}__{}", schema.name, names.join("__"));
            format!("DROP INDEX IF EXISTS {}", quote(&index_name))
        })
        .collect()
}

/// `t.k1 = s.k1 AND ...` over the primary key, joining a table `t` to rows `s` of the same
/// dataset (staged, or keys).
pub(crate) fn key_matches(schema: &DatasetSchema) -> String {
    schema
        .key_fields()
        .map(|f| format!("t.{0} = s.{0}", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A domain value as an SQL literal, for the few statements that cannot take parameters (a
/// column's `DEFAULT`, a migration's `SELECT` of defaults): the spelling every SQL store shares.
pub(crate) fn literal(value: &Value) -> String {
    dataforge_sql::literal(&DuckDbDialect, value)
}

/// A timestamp literal from its microseconds, exactly (no text to parse).
pub(crate) fn timestamp_literal(micros: i64) -> String {
    format!("make_timestamp({micros}::BIGINT)")
}

/// A domain value as a DuckDB parameter.
pub(crate) fn bind(value: &Value) -> DuckValue {
    match value {
        Value::Null => DuckValue::Null,
        Value::Boolean(b) => DuckValue::Boolean(*b),
        Value::Integer(i) => DuckValue::BigInt(*i),
        Value::Float(f) => DuckValue::Double(*f),
        Value::String(s) | Value::Json(s) => DuckValue::Text(s.clone()),
        Value::Date(d) => DuckValue::Date32(*d),
        Value::Timestamp(t) => DuckValue::Timestamp(TimeUnit::Microsecond, *t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DuckDB reads each literal back as the value it spells.
    #[test]
    fn literals_read_back_as_their_values() {
        let db = duckdb::Connection::open_in_memory().unwrap();
        let read = |value: Value| -> String {
            let sql = format!("SELECT CAST({} AS VARCHAR)", literal(&value));
            db.query_row(&sql, [], |row| row.get(0)).unwrap()
        };
        for text in ["O'Brien", r"C:\data\n", "''", r"\'", ""] {
            assert_eq!(read(Value::String(text.into())), text);
        }
        assert_eq!(read(Value::Float(1.5)), "1.5");
        assert_eq!(read(Value::Float(f64::NEG_INFINITY)), "-inf");
        assert_eq!(read(Value::Float(f64::NAN)), "nan");
        assert_eq!(read(Value::Date(18_262)), "2020-01-01");
        assert_eq!(read(Value::Boolean(false)), "false");
        for micros in [0, -1, 1_234_567_890_123_456] {
            let sql = format!("SELECT epoch_us({})", literal(&Value::Timestamp(micros)));
            let read: i64 = db.query_row(&sql, [], |row| row.get(0)).unwrap();
            assert_eq!(read, micros);
        }
    }

    /// A NUL (which validation refuses before) stays in the literal, and the driver refuses the
    /// statement rather than cut it short.
    #[test]
    fn a_statement_with_a_nul_is_refused_whole() {
        let db = duckdb::Connection::open_in_memory().unwrap();
        let sql = format!("SELECT {}", literal(&Value::String("a\0b".into())));
        assert!(db.prepare(&sql).is_err());
    }
}
