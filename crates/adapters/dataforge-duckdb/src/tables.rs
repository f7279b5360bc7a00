//! What DuckDB says of the datasets' tables: their columns, and how they differ from a schema
//! (for tables stored before schema versions were kept; see `migrate`).

use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use duckdb::Connection;

use crate::sql::column_type;
use crate::store_error;

/// A stored column as DuckDB describes it.
pub(crate) struct StoredColumn {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

pub(crate) fn stored_columns(
    conn: &Connection,
    table: &str,
) -> Result<Vec<StoredColumn>, StoreError> {
    let mut statement = conn
        .prepare(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        )
        .map_err(store_error)?;
    let rows = statement
        .query_map([table], |row| {
            Ok(StoredColumn {
                name: row.get(0)?,
                data_type: row.get(1)?,
                nullable: row.get::<_, String>(2)? == "YES",
            })
        })
        .map_err(store_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(store_error)
}

/// Every way the stored table differs from the schema, in words.
pub(crate) fn differences(schema: &DatasetSchema, stored: &[StoredColumn]) -> Vec<String> {
    let mut found = Vec::new();
    for field in &schema.fields {
        let expected_type = column_type(field.field_type);
        match stored.iter().find(|c| c.name == field.name) {
            None => found.push(format!("column `{}` is missing", field.name)),
            Some(column) => {
                if column.data_type != expected_type {
                    found.push(format!(
                        "column `{}` is {} but the schema declares {} ({expected_type})",
                        field.name, column.data_type, field.field_type
                    ));
                }
                if column.nullable == field.required {
                    let (stored, declared) = if field.required {
                        ("nullable", "required")
                    } else {
                        ("NOT NULL", "optional")
                    };
                    found.push(format!(
                        "column `{}` is {stored} but the schema declares it {declared}",
                        field.name
                    ));
                }
            }
        }
    }
    for column in stored.iter().filter(|c| schema.field(&c.name).is_none()) {
        found.push(format!(
            "column `{}` is stored but not declared",
            column.name
        ));
    }
    if found.is_empty() {
        let stored_order: Vec<&str> = stored.iter().map(|c| c.name.as_str()).collect();
        let declared_order: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        if stored_order != declared_order {
            found.push(format!(
                "columns are stored in the order ({}) but declared in the order ({})",
                stored_order.join(", "),
                declared_order.join(", ")
            ));
        }
    }
    found
}

/// The datasets' tables: every table of the main schema but dataforge's own (`_dataforge_*`).
pub(crate) fn user_tables(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn
        .prepare(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' \
             AND NOT starts_with(table_name, '_dataforge') ORDER BY table_name",
        )
        .map_err(store_error)?;
    let rows = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(store_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(store_error)
}
