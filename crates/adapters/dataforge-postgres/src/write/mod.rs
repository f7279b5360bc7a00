//! Writes: a write's records wait for its commit (held, or copied into a temporary table of its
//! transaction: `session.rs`), and its commit is one `INSERT ... SELECT` per conflict mode
//! (`statements.rs`), so that a write is all or nothing. Key checks are the primary key's: two
//! writes of one key through any nodes cannot both insert it, and the loser's answer lists the
//! keys (409). Records keep their position in the request (`_dataforge_row`), which decides which
//! of two records with one key wins. A merge, two statements, holds the dataset's lock. Small
//! writes that arrive together are committed together (`group.rs`).

mod group;
mod pipeline;
mod policy;
mod session;
mod statements;

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::ports::{
    BoxFuture, ConflictReason, ConflictingKey, IncompleteRecord, StagedWrite, StoreError,
};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
use dataforge_sql::quote;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;

pub(crate) use self::group::Groups;
use self::session::{Session, copy_batch, create_staged, holds};
use self::statements::{Inserts, key_values, key_values_from};
use crate::connection;
use crate::errors::statement_error as failed;
use crate::partitions;

/// Records past which a write refreshes the table's statistics at once, rather than when
/// autovacuum comes by: plans and `exact=false` counts after a bulk load then know its size.
const ANALYZED_WRITE: i64 = 100_000;

/// Where a write's records are until its commit.
enum Staged {
    Held(Vec<RecordBatch>),
    /// A connection in the transaction whose temporary table holds them.
    Copied(Box<Object>),
}

/// One write in progress.
pub(crate) struct PostgresWrite {
    pool: Pool,
    /// Where small writes queue for their group.
    groups: Arc<Groups>,
    writing: Writing,
    /// `None` once committed or rolled back.
    staged: Option<Staged>,
}

/// A write's dataset and the records it staged: what its statements and its answer need.
#[derive(Clone)]
struct Writing {
    schema: Arc<DatasetSchema>,
    rows: i64,
}

impl PostgresWrite {
    pub(crate) fn begin(pool: Pool, groups: Arc<Groups>, schema: Arc<DatasetSchema>) -> Self {
        PostgresWrite {
            pool,
            groups,
            writing: Writing { schema, rows: 0 },
            staged: Some(Staged::Held(Vec::new())),
        }
    }

    async fn stage_batch(&mut self, batch: RecordBatch) -> Result<(), StoreError> {
        let first_row = self.writing.rows;
        self.writing.rows += batch.num_rows() as i64;
        let schema = &self.writing.schema;
        match self.staged.take() {
            Some(Staged::Held(mut batches)) if holds(schema, self.writing.rows as usize) => {
                batches.push(batch);
                self.staged = Some(Staged::Held(batches));
            }
            Some(Staged::Held(batches)) => {
                let client = connection(&self.pool).await?;
                create_staged(&client, schema).await?;
                let mut row = 0;
                for held in batches.iter().chain(std::iter::once(&batch)) {
                    copy_batch(&client, schema, held, row).await?;
                    row += held.num_rows() as i64;
                }
                self.staged = Some(Staged::Copied(Box::new(client)));
            }
            Some(Staged::Copied(client)) => {
                let copied = copy_batch(&client, schema, &batch, first_row).await;
                self.staged = Some(Staged::Copied(client));
                copied?;
            }
            None => {
                return Err(StoreError::Internal(
                    "a write was used after its end".into(),
                ));
            }
        }
        Ok(())
    }

    async fn finish(mut self, mode: ConflictMode) -> Result<WriteOutcome, StoreError> {
        let writing = &self.writing;
        match self.staged.take() {
            Some(Staged::Held(batches)) if policy::joins_group(mode) => {
                self.groups.commit(writing.clone(), batches, mode).await
            }
            Some(Staged::Held(batches)) => {
                let client = connection(&self.pool).await?;
                let session =
                    Session::held(&client, &writing.schema, &batches).in_open_transaction();
                // a merge is two statements, and takes the dataset's lock: a transaction
                client.batch_execute("BEGIN").await.map_err(failed)?;
                let outcome = writing.store(&session, mode).await;
                end(&client, outcome.is_ok()).await?;
                outcome
            }
            Some(Staged::Copied(client)) => {
                let outcome = writing.store(&Session::copied(&client), mode).await;
                end(&client, outcome.is_ok()).await?;
                if outcome.is_ok() && writing.rows >= ANALYZED_WRITE {
                    let analyze = format!("ANALYZE {}", quote(&writing.schema.name));
                    if let Err(e) = client.batch_execute(&analyze).await {
                        tracing::warn!(dataset = %writing.schema.name, error = %e, "statistics not refreshed after a large write");
                    }
                }
                outcome
            }
            None => Err(StoreError::Internal("a write was committed twice".into())),
        }
    }
}

impl Writing {
    /// Stores the staged records in `mode`, in the session's transaction if it has one (held
    /// records alone but in a merge have none: their one statement is its own transaction).
    async fn store(
        &self,
        session: &Session<'_>,
        mode: ConflictMode,
    ) -> Result<WriteOutcome, StoreError> {
        self.make_partitions(session).await?;
        let sql = Inserts::new(&self.schema);
        match mode {
            ConflictMode::Error => self.insert_or_conflict(session, &sql).await,
            ConflictMode::Ignore => {
                let inserted = session.execute(&sql.ignoring()).await.map_err(failed)?;
                Ok(self.outcome(inserted, 0))
            }
            ConflictMode::Upsert => {
                let rows = session.query(&sql.replacing()).await.map_err(failed)?;
                let counted = |i| rows.first().map_or(0, |r| r.get::<_, i64>(i) as u64);
                Ok(self.outcome(counted(0), counted(1)))
            }
            ConflictMode::Merge => {
                lock_dataset(session.client, &self.schema).await?;
                if let Some(incomplete) = self.incomplete(session).await? {
                    return Err(incomplete);
                }
                // two statements, not ON CONFLICT: PostgreSQL checks NOT NULL on the row it would
                // insert before it finds the conflict, and a merged record may leave fields out
                let updated = match sql.merging() {
                    Some(update) => session.execute(&update).await.map_err(failed)?,
                    None => 0,
                };
                let inserted = session.execute(&sql.adding()).await.map_err(failed)?;
                Ok(self.outcome(inserted, updated))
            }
        }
    }

    /// Inserts every record, or answers the keys that exist or repeat: the primary key refuses
    /// them, whichever node wrote the other record.
    async fn insert_or_conflict(
        &self,
        session: &Session<'_>,
        sql: &Inserts,
    ) -> Result<WriteOutcome, StoreError> {
        if session.in_transaction() {
            session
                .execute("SAVEPOINT inserting")
                .await
                .map_err(failed)?;
        }
        match session.execute(&sql.plain()).await {
            Ok(inserted) => Ok(self.outcome(inserted, 0)),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                if session.in_transaction() {
                    session
                        .execute("ROLLBACK TO SAVEPOINT inserting")
                        .await
                        .map_err(failed)?;
                }
                // the other record is committed by now: PostgreSQL waited for it to refuse this one
                Err(self
                    .conflicts(session)
                    .await?
                    .unwrap_or(StoreError::Conflict {
                        keys: Vec::new(),
                        total: 1,
                    }))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Makes the partitions the staged records need; the dataset's lock is taken only when one is
    /// missing (in a transaction of its own for held records, which have none).
    async fn make_partitions(&self, session: &Session<'_>) -> Result<(), StoreError> {
        let Some(sql) = partitions::starts_sql(&self.schema, statements::STAGED) else {
            return Ok(());
        };
        let starts = session.query(&sql).await.map_err(failed)?;
        let needed: Vec<i32> = starts.iter().map(|r| r.get(0)).collect();
        let client: &tokio_postgres::Client = session.client;
        let missing = partitions::missing(client, &self.schema, &needed).await?;
        if missing.is_empty() {
            return Ok(());
        }
        let own = !session.in_transaction();
        if own {
            client.batch_execute("BEGIN").await.map_err(failed)?;
        }
        lock_dataset(session.client, &self.schema).await?;
        let made = partitions::create_all(client, &self.schema, &missing).await;
        if own {
            end(session.client, made.is_ok()).await?;
        }
        made
    }

    /// Records inserted and updated; the others staged were superseded by a later one.
    fn outcome(&self, inserted: u64, updated: u64) -> WriteOutcome {
        WriteOutcome {
            inserted,
            updated,
            skipped: (self.rows as u64).saturating_sub(inserted + updated),
        }
    }

    /// The keys that exist already or repeat among the staged records, as a conflict.
    async fn conflicts(&self, session: &Session<'_>) -> Result<Option<StoreError>, StoreError> {
        let rows = session
            .query(&statements::conflicts(&self.schema))
            .await
            .map_err(failed)?;
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
    async fn incomplete(&self, session: &Session<'_>) -> Result<Option<StoreError>, StoreError> {
        let Some(sql) = statements::incomplete(&self.schema) else {
            return Ok(None);
        };
        let rows = session.query(&sql).await.map_err(failed)?;
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

/// Ends the transaction: committed when `keep`, else rolled back.
async fn end(client: &Object, keep: bool) -> Result<(), StoreError> {
    let end = if keep { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(failed)
}

/// Holds, until the transaction ends, the dataset's lock: one merge, change by filter or making
/// of partitions at a time in a dataset, whichever node it came through.
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

impl StagedWrite for PostgresWrite {
    fn stage(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.stage_batch(batch))
    }

    fn commit(
        self: Box<Self>,
        mode: ConflictMode,
    ) -> BoxFuture<'static, Result<WriteOutcome, StoreError>> {
        Box::pin(self.finish(mode))
    }
}

impl Drop for PostgresWrite {
    /// A write dropped with records copied leaves its transaction open on the connection: the
    /// connection is closed rather than returned to the pool (PostgreSQL rolls back).
    fn drop(&mut self) {
        if let Some(Staged::Copied(client)) = self.staged.take() {
            drop(Object::take(*client));
        }
    }
}
