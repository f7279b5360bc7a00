//! Tables from schemas on PostgreSQL: the composite primary key as a real constraint, declared
//! indexes as B-tree indexes, required fields `NOT NULL`, and each applied schema kept as a
//! version (the same comparison with the declared schemas as on DuckDB, `schema::evolve`). Nodes
//! prepare one at a time, under an advisory lock held for the transaction.

use std::collections::HashMap;
use std::sync::Arc;

use dataforge_domain::ports::{MigrationPolicy, MigrationReport, SchemaVersion, StoreError};
use dataforge_domain::schema::evolve;
use dataforge_domain::schema::{Catalog, DatasetSchema, from_document, to_document};
use dataforge_sql::{column_list, quote};
use tokio_postgres::GenericClient;

use crate::errors::statement_error as failed;
use crate::values::column_type;
use crate::{migrate, partitions};

/// The table of applied schema versions.
const SCHEMAS_TABLE: &str = "_dataforge_schemas";

/// The advisory lock migrations hold ("dataforge" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x0064_6174_6166_6f72;

/// `CREATE TABLE` for a dataset, and its declared indexes.
pub(crate) fn create_table(schema: &DatasetSchema) -> Vec<String> {
    let mut statements = vec![create_table_named(schema, &schema.name)];
    statements.extend(index_statements(schema));
    statements
}

/// `CREATE TABLE` with a dataset's columns under `name`, its key as the primary key constraint.
pub(crate) fn create_table_named(schema: &DatasetSchema, name: &str) -> String {
    let columns: Vec<String> = schema
        .fields
        .iter()
        .map(|f| {
            let not_null = if f.required { " NOT NULL" } else { "" };
            format!("{} {}{not_null}", quote(&f.name), column_type(f.field_type))
        })
        .collect();
    let key = column_list(schema.key_fields().map(|f| f.name.as_str()));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({key})){}",
        quote(name),
        columns.join(", "),
        partitions::clause(schema)
    )
}

/// The name of a declared index: `<dataset>__<field>__<field>`.
pub(crate) fn index_name(schema: &DatasetSchema, fields: &[usize]) -> String {
    let names: Vec<&str> = fields
        .iter()
        .map(|&i| schema.fields[i].name.as_str())
        .collect();
    format!("{}__{}", schema.name, names.join("__"))
}

/// `CREATE INDEX` for each declared index (B-tree, in the declared field order).
pub(crate) fn index_statements(schema: &DatasetSchema) -> Vec<String> {
    schema
        .indexes
        .iter()
        .map(|fields| {
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote(&index_name(schema, fields)),
                quote(&schema.name),
                column_list(fields.iter().map(|&i| schema.fields[i].name.as_str()))
            )
        })
        .collect()
}

/// Compares the database with `catalog` and, with `policy.apply`, creates what is missing and
/// records the versions, in one transaction under the migration lock.
pub(crate) async fn prepare(
    client: &mut tokio_postgres::Client,
    catalog: &Catalog,
    policy: MigrationPolicy,
) -> Result<MigrationReport, StoreError> {
    let tx = client.transaction().await.map_err(failed)?;
    // a node that prepares waits here for another one that does
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (dataset TEXT NOT NULL, version BIGINT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), document TEXT NOT NULL, \
         PRIMARY KEY (dataset, version))",
        quote(SCHEMAS_TABLE)
    ))
    .await
    .map_err(failed)?;
    let latest = latest_versions(&tx).await?;
    let tables = user_tables(&tx).await?;
    let mut report = MigrationReport::default();
    let mut stored = Vec::new();
    for declared in catalog.iter() {
        if !tables.contains(&declared.name) {
            report.created.push(declared.name.clone());
            continue;
        }
        let Some((_, document)) = latest.get(&declared.name) else {
            return Err(StoreError::MigrationRefused(format!(
                "table {} exists but no schema version of it is recorded: it was not made by dataforge",
                declared.name
            )));
        };
        let was = stored_schema(document)?;
        let plan = evolve::plan(&was, declared);
        if !plan.steps.is_empty() {
            report.plans.push(plan);
        }
        stored.push(Arc::new(was));
    }
    report.undeclared = tables
        .into_iter()
        .filter(|t| catalog.get(t).is_none())
        .collect();
    if !policy.apply {
        return Ok(report);
    }
    if let Some(refused) = report.refusal(policy) {
        return Err(refused);
    }
    let stored = Catalog::of(stored);
    for plan in &report.plans {
        let declared = declared(catalog, &plan.dataset)?;
        if plan.needs_check() {
            migrate::check_records(&tx, declared, plan).await?;
        }
        if plan.key_changed {
            migrate::check_unique(&tx, declared, plan).await?;
        }
    }
    for name in &report.created {
        for statement in create_table(declared(catalog, name)?) {
            tx.batch_execute(&statement).await.map_err(failed)?;
        }
        tracing::info!(dataset = %name, "created table");
    }
    for plan in &report.plans {
        let was = declared(&stored, &plan.dataset)?;
        migrate::change_table(&tx, was, declared(catalog, &plan.dataset)?, plan).await?;
    }
    for schema in catalog.iter() {
        migrate::match_indexes(&tx, schema).await?;
    }
    for name in &report.undeclared {
        if policy.allow_destructive {
            tx.batch_execute(&format!("DROP TABLE {}", quote(name)))
                .await
                .map_err(failed)?;
            tracing::warn!(dataset = %name, "dropped a dataset declared in no schema file");
        } else {
            tracing::warn!(dataset = %name, "a dataset is stored but declared in no schema file; its data is kept (`dataforge migrate --apply --allow-destructive` drops it)");
        }
    }
    report.versions = record_versions(&tx, catalog, &latest).await?;
    tx.commit().await.map_err(failed)?;
    report.applied = true;
    Ok(report)
}

fn declared<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c DatasetSchema, StoreError> {
    catalog
        .get(name)
        .map(|s| s.as_ref())
        .ok_or_else(|| StoreError::Internal(format!("no dataset {name} in the catalog")))
}

fn stored_schema(document: &str) -> Result<DatasetSchema, StoreError> {
    let json = serde_json::from_str(document)
        .map_err(|e| StoreError::Internal(format!("a stored schema is not JSON: {e}")))?;
    from_document(&json).map_err(|e| StoreError::Internal(format!("a stored schema: {e}")))
}

/// Tables of the current schema that hold datasets.
async fn user_tables(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename NOT LIKE '\\_dataforge%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(failed)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records the declared schema of every dataset whose latest stored version differs; answers
/// every declared dataset's version.
async fn record_versions(
    client: &impl GenericClient,
    catalog: &Catalog,
    latest: &HashMap<String, (u64, String)>,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let mut versions = std::collections::BTreeMap::new();
    for schema in catalog.iter() {
        let document = to_document(schema).to_string();
        let version = match latest.get(&schema.name) {
            Some((version, stored)) if *stored == document => *version,
            other => {
                let version = other.map_or(1, |(v, _)| v + 1);
                client
                    .execute(
                        &format!(
                            "INSERT INTO {} (dataset, version, document) VALUES ($1, $2, $3)",
                            quote(SCHEMAS_TABLE)
                        ),
                        &[&schema.name, &(version as i64), &document],
                    )
                    .await
                    .map_err(failed)?;
                version
            }
        };
        versions.insert(schema.name.clone(), version);
    }
    Ok(versions)
}

async fn latest_versions(
    client: &impl GenericClient,
) -> Result<HashMap<String, (u64, String)>, StoreError> {
    Ok(history(client)
        .await?
        .into_iter()
        .map(|v| (v.dataset, (v.version, v.document.to_string())))
        .collect())
}

/// Every applied schema version, oldest first.
pub(crate) async fn history(client: &impl GenericClient) -> Result<Vec<SchemaVersion>, StoreError> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&SCHEMAS_TABLE])
        .await
        .map_err(failed)?;
    if !exists.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT dataset, version, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), document \
                 FROM {} ORDER BY dataset, version",
                quote(SCHEMAS_TABLE)
            ),
            &[],
        )
        .await
        .map_err(failed)?;
    Ok(rows
        .iter()
        .map(|row| SchemaVersion {
            dataset: row.get(0),
            version: row.get::<_, i64>(1) as u64,
            applied_at: row.get(2),
            document: serde_json::from_str(row.get(3)).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
