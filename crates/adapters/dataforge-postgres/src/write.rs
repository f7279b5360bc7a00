//! Writes: a write's batches go into a temporary table of its transaction through binary `COPY`
//! as they come, and its commit is one `INSERT ... SELECT` per conflict mode, so that a write is
//! all or nothing and key checks are the primary key's. Records keep their position in the
//! request (`_dataforge_row`), which decides which of two records with one key wins.

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::BytesMut;
use dataforge_domain::ports::{
    BoxFuture, ConflictReason, ConflictingKey, IncompleteRecord, StagedWrite, StoreError,
};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
use dataforge_sql::{column_list, quote};
use deadpool_postgres::{Object, Pool};
use futures_util::{SinkExt, pin_mut};

use crate::connection;
use crate::errors::statement_error as failed;
use crate::values::{Cell, column_type, literal};
use crate::{copy, partitions};

/// The temporary table a write stages into (one per connection and transaction).
const STAGED: &str = "_dataforge_staged";
/// The column holding a staged record's position in the write, from 0.
const ROW: &str = "_dataforge_row";
/// Records past which a write refreshes the table's statistics at once, rather than when
/// autovacuum comes by: plans and `exact=false` counts after a bulk load then know its size.
const ANALYZED_WRITE: i64 = 100_000;
/// Conflicting keys or incomplete records listed, at most.
const LISTED: i64 = 100;

/// One write in progress: a connection inside a transaction, with the staged table.
pub(crate) struct PostgresWrite {
    /// `None` once committed or rolled back.
    client: Option<Object>,
    schema: Arc<DatasetSchema>,
    staged: i64,
}

impl PostgresWrite {
    pub(crate) async fn begin(pool: Pool, schema: Arc<DatasetSchema>) -> Result<Self, StoreError> {
        let client = connection(&pool).await?;
        let columns: Vec<String> = schema
            .fields
            .iter()
            .map(|f| format!("{} {}", quote(&f.name), column_type(f.field_type)))
            .collect();
        client
            .batch_execute(&format!(
                "BEGIN; CREATE TEMPORARY TABLE {STAGED} ({}, {ROW} BIGINT NOT NULL) ON COMMIT DROP",
                columns.join(", ")
            ))
            .await
            .map_err(failed)?;
        Ok(PostgresWrite {
            client: Some(client),
            schema,
            staged: 0,
        })
    }

    fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Internal("a write was used after its end".into()))
    }

    /// Copies a batch into the staged table, in chunks of about a MiB.
    async fn copy(&mut self, batch: RecordBatch) -> Result<(), StoreError> {
        const CHUNK_BYTES: usize = 1 << 20;
        let names = column_list(self.schema.fields.iter().map(|f| f.name.as_str()));
        let sink = self
            .client()?
            .copy_in::<_, bytes::Bytes>(&format!(
                "COPY {STAGED} ({names}, {ROW}) FROM STDIN BINARY"
            ))
            .await
            .map_err(failed)?;
        pin_mut!(sink);
        let mut out = BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024);
        copy::header(&mut out);
        let mut row = 0;
        while row < batch.num_rows() {
            let end = (row + 1024).min(batch.num_rows());
            copy::rows(&self.schema, &batch, row..end, self.staged, &mut out);
            self.staged += (end - row) as i64;
            row = end;
            if out.len() >= CHUNK_BYTES {
                sink.send(out.split().freeze()).await.map_err(failed)?;
            }
        }
        copy::trailer(&mut out);
        sink.send(out.freeze()).await.map_err(failed)?;
        sink.finish().await.map_err(failed)?;
        Ok(())
    }

    async fn finish(mut self, mode: ConflictMode) -> Result<WriteOutcome, StoreError> {
        let outcome = self.store(mode).await;
        let client = self.client.take();
        if let Some(client) = &client {
            let end = if outcome.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            client.batch_execute(end).await.map_err(failed)?;
            if outcome.is_ok() && self.staged >= ANALYZED_WRITE {
                let analyze = format!("ANALYZE {}", quote(&self.schema.name));
                if let Err(e) = client.batch_execute(&analyze).await {
                    tracing::warn!(dataset = %self.schema.name, error = %e, "statistics not refreshed after a large write");
                }
            }
        }
        outcome
    }

    async fn store(&self, mode: ConflictMode) -> Result<WriteOutcome, StoreError> {
        let client = self.client()?;
        lock_dataset(client, &self.schema).await?;
        let connection: &tokio_postgres::Client = client;
        partitions::make_for(connection, &self.schema, &self.schema.name, STAGED).await?;
        let sql = Inserts::new(&self.schema);
        let outcome = match mode {
            ConflictMode::Error => {
                let conflicts = self.conflicts().await?;
                if let Some(conflict) = conflicts {
                    return Err(conflict);
                }
                let inserted = client.execute(&sql.plain(), &[]).await.map_err(failed)?;
                WriteOutcome {
                    inserted,
                    ..WriteOutcome::default()
                }
            }
            ConflictMode::Ignore => {
                let inserted = client.execute(&sql.ignoring(), &[]).await.map_err(failed)?;
                WriteOutcome {
                    inserted,
                    skipped: self.staged as u64 - inserted,
                    ..WriteOutcome::default()
                }
            }
            ConflictMode::Upsert => {
                let row = client
                    .query_one(&sql.replacing(), &[])
                    .await
                    .map_err(failed)?;
                let (inserted, updated): (i64, i64) = (row.get(0), row.get(1));
                self.outcome(inserted as u64, updated as u64)
            }
            ConflictMode::Merge => {
                if let Some(incomplete) = self.incomplete().await? {
                    return Err(incomplete);
                }
                // two statements, not ON CONFLICT: PostgreSQL checks NOT NULL on the row it would
                // insert before it finds the conflict, and a merged record may leave fields out
                let updated = match sql.merging() {
                    Some(update) => client.execute(&update, &[]).await.map_err(failed)?,
                    None => 0,
                };
                let inserted = client.execute(&sql.adding(), &[]).await.map_err(failed)?;
                self.outcome(inserted, updated)
            }
        };
        Ok(outcome)
    }

    /// Records inserted and updated; the others staged were superseded by a later one.
    fn outcome(&self, inserted: u64, updated: u64) -> WriteOutcome {
        WriteOutcome {
            inserted,
            updated,
            skipped: (self.staged as u64).saturating_sub(inserted + updated),
        }
    }

    /// The keys that exist already or repeat among the staged records, as a conflict.
    async fn conflicts(&self) -> Result<Option<StoreError>, StoreError> {
        let key = column_list(self.schema.key_fields().map(|f| f.name.as_str()));
        let table = quote(&self.schema.name);
        let matches = key_matches(&self.schema);
        let sql = format!(
            "WITH found AS ( \
               SELECT {key}, 'repeated' AS reason, min({ROW}) AS at FROM {STAGED} GROUP BY {key} HAVING count(*) > 1 \
               UNION ALL \
               SELECT {key}, 'exists', min({ROW}) FROM {STAGED} s \
                 WHERE EXISTS (SELECT 1 FROM {table} t WHERE {matches}) GROUP BY {key}) \
             SELECT *, count(*) OVER () FROM found ORDER BY at LIMIT {LISTED}"
        );
        let rows = self.client()?.query(&sql, &[]).await.map_err(failed)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let width = self.schema.primary_key.len();
        let total: i64 = first.get(width + 2);
        let keys = rows
            .iter()
            .map(|row| ConflictingKey {
                key: key_values(&self.schema, row),
                reason: match row.get::<_, &str>(width) {
                    "repeated" => ConflictReason::Repeated,
                    _ => ConflictReason::Exists,
                },
            })
            .collect();
        Ok(Some(StoreError::Conflict {
            keys,
            total: total as u64,
        }))
    }

    /// Merged records under keys not stored that lack a required field, as an error.
    async fn incomplete(&self) -> Result<Option<StoreError>, StoreError> {
        let table = quote(&self.schema.name);
        let key = column_list(self.schema.key_fields().map(|f| f.name.as_str()));
        let matches = key_matches(&self.schema);
        let missing: Vec<String> = self
            .schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                f.required && f.default.is_none() && !self.schema.primary_key.contains(i)
            })
            .map(|(_, f)| format!("({} IS NULL, '{}')", quote(&f.name), f.name))
            .collect();
        if missing.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "WITH latest AS (SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW} DESC), \
             lacking AS (SELECT s.{ROW}, {key_s}, m.field FROM latest s \
               CROSS JOIN LATERAL (VALUES {missing}) AS m(absent, field) \
               WHERE m.absent AND NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})) \
             SELECT *, count(*) OVER () FROM lacking ORDER BY 1 LIMIT {LISTED}",
            key_s = self
                .schema
                .key_fields()
                .map(|f| format!("s.{}", quote(&f.name)))
                .collect::<Vec<_>>()
                .join(", "),
            missing = missing.join(", ")
        );
        let rows = self.client()?.query(&sql, &[]).await.map_err(failed)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let width = self.schema.primary_key.len();
        let total: i64 = first.get(width + 2);
        let records = rows
            .iter()
            .map(|row| IncompleteRecord {
                row: row.get::<_, i64>(0) as u64 + 1,
                key: key_values_from(&self.schema, row, 1),
                field: row.get(width + 1),
            })
            .collect();
        Ok(Some(StoreError::Incomplete {
            records,
            total: total as u64,
        }))
    }
}

/// Holds, until the transaction ends, the lock that makes one write or change at a time settle
/// its keys in a dataset, whichever node it came through: a key check and the insert it allows
/// are then one step (and concurrent upserts cannot deadlock on each other's rows).
pub(crate) async fn lock_dataset(
    client: &impl deadpool_postgres::GenericClient,
    schema: &DatasetSchema,
) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("dataforge:{}", schema.name)],
        )
        .await
        .map_err(failed)?;
    Ok(())
}

/// A key read back from the first columns of `row`.
fn key_values(schema: &DatasetSchema, row: &tokio_postgres::Row) -> Vec<Value> {
    key_values_from(schema, row, 0)
}

fn key_values_from(schema: &DatasetSchema, row: &tokio_postgres::Row, from: usize) -> Vec<Value> {
    schema
        .key_fields()
        .enumerate()
        .map(|(i, f)| match row.try_get::<_, Option<Cell>>(from + i) {
            Ok(Some(cell)) => cell.value(f.field_type),
            _ => Value::Null,
        })
        .collect()
}

/// `t.k1 = s.k1 AND ...` over the primary key.
fn key_matches(schema: &DatasetSchema) -> String {
    schema
        .key_fields()
        .map(|f| format!("t.{0} = s.{0}", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The `INSERT`s of a commit, one per conflict mode.
struct Inserts {
    table: String,
    columns: String,
    key: String,
    /// Fields not in the key.
    others: Vec<String>,
    /// Stored `t` and staged `s` records with one key.
    matches: String,
    /// Every column of a staged record `s`, a declared default where it is null.
    defaulted: String,
}

impl Inserts {
    fn new(schema: &DatasetSchema) -> Self {
        Inserts {
            table: quote(&schema.name),
            columns: column_list(schema.fields.iter().map(|f| f.name.as_str())),
            key: column_list(schema.key_fields().map(|f| f.name.as_str())),
            others: schema
                .fields
                .iter()
                .enumerate()
                .filter(|(i, _)| !schema.primary_key.contains(i))
                .map(|(_, f)| quote(&f.name))
                .collect(),
            matches: key_matches(schema),
            defaulted: schema
                .fields
                .iter()
                .map(|f| match &f.default {
                    Some(default) => format!(
                        "COALESCE(s.{0}, CAST({1} AS {2}))",
                        quote(&f.name),
                        literal(default),
                        column_type(f.field_type)
                    ),
                    None => format!("s.{}", quote(&f.name)),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn plain(&self) -> String {
        let Inserts { table, columns, .. } = self;
        format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGED}")
    }

    /// The first record of each key, unless the key is stored.
    fn ignoring(&self) -> String {
        let Inserts {
            table,
            columns,
            key,
            ..
        } = self;
        format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM \
             (SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW}) s \
             ON CONFLICT ({key}) DO NOTHING"
        )
    }

    /// The last record of each key replaces the stored one; answers the records inserted and
    /// updated.
    fn replacing(&self) -> String {
        let Inserts {
            table,
            columns,
            key,
            ..
        } = self;
        let sets: Vec<String> = if self.others.is_empty() {
            // a dataset of key fields only: a stored key is "updated" to itself
            vec![format!(
                "{0} = EXCLUDED.{0}",
                key.split(", ").next().unwrap_or(key)
            )]
        } else {
            self.others
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect()
        };
        format!(
            "WITH written AS (INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {latest} \
             ON CONFLICT ({key}) DO UPDATE SET {} RETURNING (xmax = 0) AS fresh) \
             SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM written",
            sets.join(", "),
            latest = self.latest()
        )
    }

    /// The last record of each key, as a subquery `s`.
    fn latest(&self) -> String {
        format!(
            "(SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW} DESC) s",
            key = self.key
        )
    }

    /// Stored records take the non-null fields of the last record with their key (`None` for a
    /// dataset of key fields only, where there is nothing to take).
    fn merging(&self) -> Option<String> {
        if self.others.is_empty() {
            return None;
        }
        let sets: Vec<String> = self
            .others
            .iter()
            .map(|c| format!("{c} = COALESCE(s.{c}, t.{c})"))
            .collect();
        Some(format!(
            "UPDATE {} AS t SET {} FROM {} WHERE {}",
            self.table,
            sets.join(", "),
            self.latest(),
            self.matches
        ))
    }

    /// The last record of each key not stored, inserted, its absent fields given their
    /// defaults.
    fn adding(&self) -> String {
        let Inserts {
            table,
            columns,
            matches,
            defaulted,
            ..
        } = self;
        format!(
            "INSERT INTO {table} ({columns}) SELECT {defaulted} FROM {} \
             WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})",
            self.latest()
        )
    }
}

impl StagedWrite for PostgresWrite {
    fn stage(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.copy(batch))
    }

    fn commit(
        self: Box<Self>,
        mode: ConflictMode,
    ) -> BoxFuture<'static, Result<WriteOutcome, StoreError>> {
        Box::pin(self.finish(mode))
    }
}

impl Drop for PostgresWrite {
    /// A write dropped before its end leaves its transaction open on the connection: the
    /// connection is closed rather than returned to the pool (PostgreSQL rolls back).
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}
