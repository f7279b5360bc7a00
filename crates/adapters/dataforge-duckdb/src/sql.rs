//! SQL text for datasets: quoting, column types and value binding. Names come from checked schemas
//! and are always quoted; values are always bound as parameters.

use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value, format_date};
use duckdb::types::{TimeUnit, Value as DuckValue};

pub(crate) use dataforge_sql::{column_list, quote};

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
/// column's `DEFAULT`, a migration's `SELECT` of defaults). Strings are quoted with `'` doubled.
pub(crate) fn literal(value: &Value) -> String {
    let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match value {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}::DOUBLE"),
        Value::String(s) | Value::Json(s) => text(s),
        Value::Date(days) => format!("{}::DATE", text(&format_date(*days))),
        Value::Timestamp(micros) => format!("make_timestamp({micros}::BIGINT)"),
    }
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
