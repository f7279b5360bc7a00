//! Schema changes on PostgreSQL, inside the transaction that holds the migration lock: stored
//! records checked against the declared schema first (the domain's check, on batches read with
//! the shared SQL), then the table changed: columns added or their `NOT NULL` changed in place, or
//! the table rewritten through the mapped `SELECT` when columns move or change type; the primary
//! key constraint follows a changed key, and declared indexes are made to match.

use dataforge_domain::ports::StoreError;
use dataforge_domain::query::OutputColumn;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::schema::evolve::{ColumnChange, DatasetPlan};
use dataforge_domain::schema::stored_check::{
    LISTED_REPEATED_KEYS, StoredRecordsCheck, grouped_key_text, repeated_keys_refusal,
};
use dataforge_sql::{column_changes, column_list, mapped_select, quote, repeated_keys};
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::Transaction;

use crate::dialect::PostgresDialect;
use crate::errors::statement_error as failed;
use crate::partitions;
use crate::tables::{create_table_named, index_name, index_statements};
use crate::values::batch;

/// Rows per batch of stored records checked.
const CHECKED_ROWS: usize = 16 * 1024;

fn columns_of<'a>(
    fields: impl Iterator<Item = &'a dataforge_domain::schema::FieldSchema>,
) -> Vec<OutputColumn> {
    fields
        .map(|f| OutputColumn {
            name: f.name.clone(),
            field_type: f.field_type,
        })
        .collect()
}

/// Refuses the migration when stored records, as the declared schema holds them, break a rule.
pub(crate) async fn check_records(
    tx: &Transaction<'_>,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    tracing::info!(dataset = %declared.name, "checking stored records against the new schema");
    let columns = columns_of(declared.fields.iter());
    let select = mapped_select(&PostgresDialect, declared, plan);
    let rows = tx
        .query_raw(&select, std::iter::empty::<i64>())
        .await
        .map_err(migration_error)?;
    pin_mut!(rows);
    let mut check = StoredRecordsCheck::new(declared);
    let mut pending = Vec::with_capacity(CHECKED_ROWS);
    loop {
        let row = rows.next().await.transpose().map_err(migration_error)?;
        let end = row.is_none();
        pending.extend(row);
        if pending.len() == CHECKED_ROWS || (end && !pending.is_empty()) {
            check.check(&batch(&columns, &pending).map_err(StoreError::Internal)?);
            pending.clear();
        }
        if end {
            break;
        }
    }
    check
        .refusal()
        .map_or(Ok(()), |why| Err(StoreError::MigrationRefused(why)))
}

/// Refuses a new primary key that stored records repeat.
pub(crate) async fn check_unique(
    tx: &Transaction<'_>,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    let sql = repeated_keys(&PostgresDialect, declared, plan, LISTED_REPEATED_KEYS);
    let rows = tx.query(&sql, &[]).await.map_err(migration_error)?;
    let keys = batch(&columns_of(declared.key_fields()), &rows).map_err(StoreError::Internal)?;
    let listed: Vec<String> = (0..keys.num_rows())
        .map(|row| grouped_key_text(declared, &keys, row))
        .collect();
    repeated_keys_refusal(&declared.name, &listed)
        .map_or(Ok(()), |why| Err(StoreError::MigrationRefused(why)))
}

/// A stored value that does not convert (PostgreSQL has no `TRY_CAST`) refuses the migration.
fn migration_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") => StoreError::MigrationRefused(format!(
            "stored records do not convert to the new schema's types, so it was not applied: {}",
            db.message()
        )),
        _ => failed(e),
    }
}

/// Changes a table's columns and key as the plan says.
pub(crate) async fn change_table(
    tx: &Transaction<'_>,
    stored: &DatasetSchema,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    let table = quote(&declared.name);
    let run = async |sql: String| tx.batch_execute(&sql).await.map_err(migration_error);
    let partitioning = |s: &DatasetSchema| {
        s.partition_by
            .map(|p| (s.fields[p.field].name.clone(), p.interval))
    };
    let repartitioned = partitioning(stored) != partitioning(declared);
    match plan.columns {
        _ if repartitioned => rewrite(tx, declared, plan).await?,
        ColumnChange::Rewrite => rewrite(tx, declared, plan).await?,
        ColumnChange::Append | ColumnChange::None => {
            for statement in column_changes(&PostgresDialect, stored, declared, plan) {
                run(statement).await?;
            }
            if plan.key_changed {
                let key = column_list(declared.key_fields().map(|f| f.name.as_str()));
                run(format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {}, ADD PRIMARY KEY ({key})",
                    quote(&format!("{}_pkey", declared.name))
                ))
                .await?;
            }
        }
    }
    for step in &plan.steps {
        tracing::info!(dataset = %declared.name, risk = %step.risk, "{}", step.description);
    }
    Ok(())
}

/// Rewrites the table through the mapped `SELECT` into a new one made as declared (columns, key,
/// partitions), which then takes the dataset's name.
async fn rewrite(
    tx: &Transaction<'_>,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Result<(), StoreError> {
    let table = quote(&declared.name);
    let run = async |sql: String| tx.batch_execute(&sql).await.map_err(migration_error);
    // no dataset name starts with `_`: the working table cannot be one
    let rewritten = format!("_dataforge_migrating_{}", declared.name);
    let mapped = mapped_select(&PostgresDialect, declared, plan);
    run(format!(
        "DROP TABLE IF EXISTS {} CASCADE",
        quote(&rewritten)
    ))
    .await?;
    run(create_table_named(declared, &rewritten)).await?;
    partitions::make_for(tx, declared, &rewritten, &format!("({mapped}) AS mapped")).await?;
    run(format!("INSERT INTO {} {mapped}", quote(&rewritten))).await?;
    run(format!(
        "DROP TABLE {table} CASCADE; ALTER TABLE {} RENAME TO {table}; \
         ALTER TABLE {table} RENAME CONSTRAINT {} TO {}",
        quote(&rewritten),
        quote(&format!("{rewritten}_pkey")),
        quote(&format!("{}_pkey", declared.name))
    ))
    .await?;
    for partition in partitions::of(tx, &declared.name).await? {
        if let Some(suffix) = partition.strip_prefix(&rewritten) {
            run(format!(
                "ALTER TABLE {} RENAME TO {}",
                quote(&partition),
                quote(&format!("{}{suffix}", declared.name))
            ))
            .await?;
        }
    }
    Ok(())
}

/// Makes a table's indexes the declared ones: missing ones created, ones no longer declared
/// dropped.
pub(crate) async fn match_indexes(
    tx: &Transaction<'_>,
    declared: &DatasetSchema,
) -> Result<(), StoreError> {
    let wanted: Vec<String> = declared
        .indexes
        .iter()
        .map(|fields| index_name(declared, fields))
        .collect();
    let rows = tx
        .query(
            "SELECT indexname::TEXT FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = $1 AND starts_with(indexname, $2)",
            &[&declared.name, &format!("{}__", declared.name)],
        )
        .await
        .map_err(failed)?;
    let cluster = format!("{}__cluster", declared.name);
    for row in rows {
        let name: String = row.get(0);
        if name != cluster && !wanted.contains(&name) {
            tx.batch_execute(&format!("DROP INDEX {}", quote(&name)))
                .await
                .map_err(failed)?;
        }
    }
    for statement in index_statements(declared) {
        tx.batch_execute(&statement).await.map_err(failed)?;
    }
    Ok(())
}
