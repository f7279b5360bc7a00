//! Schema evolution on DuckDB: each applied schema is kept as a version in a table of its own;
//! at start the declared schemas are compared with the stored ones (the plan is the domain's,
//! `schema::evolve`), stored records are checked against the declared schema where a step needs
//! it, and the tables are changed in one transaction that records the new versions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dataforge_domain::ports::{MigrationPolicy, MigrationReport, SchemaVersion, StoreError};
use dataforge_domain::schema::evolve::{self, ColumnChange, DatasetPlan};
use dataforge_domain::schema::stored_check::{
    LISTED_REPEATED_KEYS, StoredRecordsCheck, grouped_key_text, repeated_keys_refusal,
};
use dataforge_domain::schema::{Catalog, DatasetSchema, from_document, to_document};
use dataforge_sql::{column_changes, repeated_keys};

use crate::select::DuckDbDialect;
use dataforge_domain::value::FieldType;
use duckdb::Connection;

use crate::batches::for_each_batch;
use crate::sql::{column_type, create_table, create_table_named, drop_legacy_indexes, quote};
use crate::store_error;
use crate::tables::{self, StoredColumn};

/// The table of applied schema versions.
const SCHEMAS_TABLE: &str = "_dataforge_schemas";

/// What the database holds and what the declared schemas ask of it.
pub(crate) struct Planned {
    pub report: MigrationReport,
    /// The schemas the tables have now (declared ones for tables still to create).
    pub stored: Catalog,
    /// The latest stored version of each dataset and its document.
    latest: HashMap<String, (u64, String)>,
}

/// Compares the database with the declared `catalog`.
pub(crate) fn plan(conn: &Connection, catalog: &Catalog) -> Result<Planned, StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (dataset VARCHAR NOT NULL, version BIGINT NOT NULL, \
         applied_at TIMESTAMP NOT NULL, document VARCHAR NOT NULL)",
        quote(SCHEMAS_TABLE)
    ))
    .map_err(store_error)?;
    let latest = latest_versions(conn)?;
    let mut report = MigrationReport::default();
    let mut stored = Vec::new();
    for declared in catalog.iter() {
        let columns = tables::stored_columns(conn, &declared.name)?;
        if columns.is_empty() {
            report.created.push(declared.name.clone());
            stored.push(Arc::clone(declared));
            continue;
        }
        let was = match latest.get(&declared.name) {
            Some((_, document)) => stored_schema(document)?,
            None => legacy_schema(declared, &columns)?,
        };
        let plan = evolve::plan(&was, declared);
        if !plan.steps.is_empty() {
            report.plans.push(plan);
        }
        stored.push(Arc::new(was));
    }
    report.undeclared = tables::user_tables(conn)?
        .into_iter()
        .filter(|t| catalog.get(t).is_none())
        .collect();
    Ok(Planned {
        report,
        stored: Catalog::of(stored),
        latest,
    })
}

fn stored_schema(document: &str) -> Result<DatasetSchema, StoreError> {
    let json = serde_json::from_str(document)
        .map_err(|e| StoreError::Internal(format!("a stored schema is not JSON: {e}")))?;
    from_document(&json).map_err(|e| StoreError::Internal(format!("a stored schema: {e}")))
}

/// The schema of a table stored before versions were kept: the declared one when the columns
/// match it, else one read off the columns (types, `NOT NULL`, no rules) with the declared key.
fn legacy_schema(
    declared: &DatasetSchema,
    columns: &[StoredColumn],
) -> Result<DatasetSchema, StoreError> {
    if tables::differences(declared, columns).is_empty() {
        return Ok(declared.clone());
    }
    let fields: Vec<serde_json::Value> = columns
        .iter()
        .map(|c| {
            let declared_type = declared.field(&c.name).map(|f| f.field_type);
            let ty = FieldType::ALL
                .into_iter()
                .filter(|t| column_type(*t) == c.data_type)
                // VARCHAR holds strings and json: the declared type decides, else string
                .max_by_key(|t| (Some(*t) == declared_type, *t == FieldType::String))
                .map_or("string", |t| t.name());
            serde_json::json!({"name": c.name, "type": ty, "required": !c.nullable})
        })
        .collect();
    let key: Vec<&str> = declared
        .key_fields()
        .map(|f| f.name.as_str())
        .filter(|k| columns.iter().any(|c| c.name == *k))
        .collect();
    let document = serde_json::json!({
        "name": declared.name, "description": declared.description,
        "primary_key": if key.is_empty() { vec![columns[0].name.as_str()] } else { key },
        "fields": fields,
    });
    from_document(&document).map_err(StoreError::Internal)
}

/// Applies the plan: checks stored records for every checked step first (nothing changes if one
/// fails), then changes the tables and records the new versions in one transaction. Answers the
/// version of every declared dataset.
pub(crate) fn apply(
    conn: &Connection,
    catalog: &Catalog,
    planned: &Planned,
    policy: MigrationPolicy,
) -> Result<BTreeMap<String, u64>, StoreError> {
    for plan in &planned.report.plans {
        let declared = declared(catalog, &plan.dataset)?;
        if plan.needs_check() {
            check_records(conn, declared, plan)?;
        }
        if plan.key_changed {
            check_unique(conn, declared, plan)?;
        }
    }
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(store_error)?;
    let applied = (|| {
        for name in &planned.report.created {
            conn.execute_batch(&create_table(declared(catalog, name)?))
                .map_err(store_error)?;
            tracing::info!(dataset = %name, "created table");
        }
        for plan in &planned.report.plans {
            let stored = declared(&planned.stored, &plan.dataset)?;
            change_table(conn, stored, declared(catalog, &plan.dataset)?, plan)?;
        }
        for schema in catalog.iter() {
            for statement in drop_legacy_indexes(schema) {
                conn.execute_batch(&statement).map_err(store_error)?;
            }
        }
        if policy.allow_destructive {
            for name in &planned.report.undeclared {
                conn.execute_batch(&format!("DROP TABLE {}", quote(name)))
                    .map_err(store_error)?;
                tracing::warn!(dataset = %name, "dropped a dataset declared in no schema file");
            }
        }
        record_versions(conn, catalog, &planned.latest)
    })();
    match applied {
        Ok(versions) => {
            conn.execute_batch("COMMIT").map_err(store_error)?;
            Ok(versions)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn declared<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c DatasetSchema, StoreError> {
    catalog
        .get(name)
        .map(|s| s.as_ref())
        .ok_or_else(|| StoreError::Internal(format!("no declared dataset {name}")))
}

/// `SELECT` of the stored rows as the declared fields (the shared SQL, in DuckDB's dialect).
fn mapped_select(declared: &DatasetSchema, plan: &DatasetPlan) -> String {
    dataforge_sql::mapped_select(&DuckDbDialect, declared, plan)
}

/// Refuses the migration when stored records, as the declared schema would hold them, break one
/// of its rules (see [`StoredRecordsCheck`]).
fn check_records(
    conn: &Connection,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    tracing::info!(dataset = %declared.name, "checking stored records against the new schema");
    let mut check = StoredRecordsCheck::new(declared);
    for_each_batch(conn, &mapped_select(declared, plan), [], |batch| {
        check.check(&batch);
        Ok(())
    })?;
    check
        .refusal()
        .map_or(Ok(()), |why| Err(StoreError::MigrationRefused(why)))
}

/// Refuses a new primary key that stored records repeat.
fn check_unique(
    conn: &Connection,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    let repeated = repeated_keys(&DuckDbDialect, declared, plan, LISTED_REPEATED_KEYS);
    let mut listed = Vec::new();
    for_each_batch(conn, &repeated, [], |batch| {
        listed.extend((0..batch.num_rows()).map(|row| grouped_key_text(declared, &batch, row)));
        Ok(())
    })?;
    repeated_keys_refusal(&declared.name, &listed)
        .map_or(Ok(()), |why| Err(StoreError::MigrationRefused(why)))
}

/// Changes a table's columns as the plan says, inside the open transaction.
fn change_table(
    conn: &Connection,
    stored: &DatasetSchema,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    let table = quote(&declared.name);
    let run = |sql: String| conn.execute_batch(&sql).map_err(store_error);
    match plan.columns {
        ColumnChange::Rewrite => {
            // no dataset name starts with `_`: the working table cannot be one
            let rewritten = format!("_dataforge_migrating_{}", declared.name);
            run(format!("DROP TABLE IF EXISTS {}", quote(&rewritten)))?;
            run(create_table_named(declared, &rewritten))?;
            run(format!(
                "INSERT INTO {} {}",
                quote(&rewritten),
                mapped_select(declared, plan)
            ))?;
            run(format!(
                "DROP TABLE {table}; ALTER TABLE {} RENAME TO {table}",
                quote(&rewritten)
            ))?;
        }
        ColumnChange::Append | ColumnChange::None => {
            for statement in column_changes(&DuckDbDialect, stored, declared, plan) {
                run(statement)?;
            }
        }
    }
    for step in &plan.steps {
        tracing::info!(dataset = %declared.name, risk = %step.risk, "{}", step.description);
    }
    Ok(())
}

/// Records the declared schema of every dataset whose latest stored version differs; answers
/// every declared dataset's version.
fn record_versions(
    conn: &Connection,
    catalog: &Catalog,
    latest: &HashMap<String, (u64, String)>,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut versions = BTreeMap::new();
    for schema in catalog.iter() {
        let document = to_document(schema).to_string();
        let version = match latest.get(&schema.name) {
            Some((version, stored)) if *stored == document => *version,
            other => {
                let version = other.map_or(1, |(v, _)| v + 1);
                conn.execute(
                    &format!(
                        "INSERT INTO {} VALUES (?, ?, now()::TIMESTAMP, ?)",
                        quote(SCHEMAS_TABLE)
                    ),
                    duckdb::params![schema.name, version as i64, document],
                )
                .map_err(store_error)?;
                version
            }
        };
        versions.insert(schema.name.clone(), version);
    }
    Ok(versions)
}

/// The latest version of each dataset's schema and its document.
fn latest_versions(conn: &Connection) -> Result<HashMap<String, (u64, String)>, StoreError> {
    let mut latest = HashMap::new();
    for version in history(conn)? {
        latest.insert(
            version.dataset,
            (version.version, version.document.to_string()),
        );
    }
    Ok(latest)
}

/// Every applied schema version, oldest first.
pub(crate) fn history(conn: &Connection) -> Result<Vec<SchemaVersion>, StoreError> {
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
            [SCHEMAS_TABLE],
            |r| r.get(0),
        )
        .map_err(store_error)?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut statement = conn
        .prepare(&format!(
            "SELECT dataset, version, strftime(applied_at, '%Y-%m-%dT%H:%M:%SZ'), document FROM {} ORDER BY dataset, version",
            quote(SCHEMAS_TABLE)
        ))
        .map_err(store_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .map_err(store_error)?;
    let mut versions = Vec::new();
    for row in rows {
        let (dataset, version, applied_at, document) = row.map_err(store_error)?;
        versions.push(SchemaVersion {
            dataset,
            version: version as u64,
            applied_at,
            document: serde_json::from_str(&document).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(versions)
}
