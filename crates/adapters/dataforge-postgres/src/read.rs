//! Reads: a record by key from the primary key, and streamed reads of any plan (pages, filters,
//! aggregates, exports) whose rows become Arrow batches as they arrive, so an export of any size
//! holds one batch at a time.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::ports::{BatchStream, BoxFuture, RowCount, StoreError};
use dataforge_domain::query::{OutputColumn, Predicate, ReadPlan};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_sql::Statement;
use deadpool_postgres::Pool;
use futures_util::{StreamExt, pin_mut};
use tokio::sync::mpsc;

use crate::connection;
use crate::dialect::PostgresDialect;
use crate::errors::{lost, store_error};
use crate::values::{Cell, Param, batch};

/// Rows per batch of a streamed read.
const BATCH_ROWS: usize = 16 * 1024;

/// The columns of every field, in schema order.
fn all_fields(schema: &DatasetSchema) -> Vec<OutputColumn> {
    schema
        .fields
        .iter()
        .map(|f| OutputColumn {
            name: f.name.clone(),
            field_type: f.field_type,
        })
        .collect()
}

pub(crate) fn params(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(Param).collect()
}

pub(crate) async fn get(
    pool: &Pool,
    schema: &DatasetSchema,
    key: &[Value],
    timeout_ms: u64,
) -> Result<Option<RecordBatch>, StoreError> {
    let statement = dataforge_sql::by_key(&PostgresDialect, schema, key);
    let row = retried(pool, timeout_ms, &statement, |client, statement| {
        Box::pin(async move {
            let prepared = prepared(client, &statement.sql).await?;
            let rows = client
                .query_raw(&prepared, params(&statement.params))
                .await?;
            pin_mut!(rows);
            rows.next().await.transpose()
        })
    })
    .await?;
    match row {
        Some(row) => batch(&all_fields(schema), &[row])
            .map(Some)
            .map_err(StoreError::Internal),
        None => Ok(None),
    }
}

/// Runs a read, and once more on a new connection when its connection was lost (see
/// [`lost`]): a read changes nothing, so trying it again is safe.
async fn retried<T>(
    pool: &Pool,
    timeout_ms: u64,
    statement: &Statement,
    read: impl for<'c> Fn(
        &'c deadpool_postgres::Object,
        &'c Statement,
    ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    let mut tried = false;
    loop {
        let client = connection(pool).await?;
        match read(&client, statement).await {
            Err(e) if !tried && lost(&e) => {
                tracing::warn!(error = %e, "a read lost its connection; trying again on a new one");
                // the broken connection is not returned to the pool
                drop(deadpool_postgres::Object::take(client));
                tried = true;
            }
            result => return result.map_err(|e| store_error(e, timeout_ms)),
        }
    }
}

/// Starts a read; resolves with its first batch ready (or its failure).
pub(crate) async fn scan(
    pool: Pool,
    schema: Arc<DatasetSchema>,
    plan: ReadPlan,
    timeout_ms: u64,
) -> Result<BatchStream, StoreError> {
    let statement = dataforge_sql::plan(&PostgresDialect, &schema, &plan);
    let columns = plan.columns(&schema);
    let (sender, mut batches) = mpsc::channel(2);
    tokio::spawn(async move {
        let failed = |e| store_error(e, timeout_ms);
        if let Err(e) = produce(&pool, &statement, &columns, &sender, failed).await {
            let _ = sender.send(Err(e)).await;
        }
    });
    let first = batches
        .recv()
        .await
        .ok_or_else(|| StoreError::Internal("a read ended before it answered".into()))??;
    let rest = std::iter::from_fn(move || batches.blocking_recv());
    Ok(BatchStream::new(std::iter::once(Ok(first)).chain(rest)))
}

/// Sends the statement's rows as batches until they end or nobody reads them any more. Then the
/// query is cancelled, so PostgreSQL stops producing what nobody wants, and the connection is
/// closed rather than returned to the pool: a cancel that reaches the server after the query ended
/// would otherwise stop whichever query the connection ran next.
async fn produce(
    pool: &Pool,
    statement: &Statement,
    columns: &[OutputColumn],
    sender: &mpsc::Sender<Result<RecordBatch, StoreError>>,
    failed: impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<(), StoreError> {
    let client = connection(pool).await?;
    let prepared = prepared(&client, &statement.sql).await.map_err(&failed)?;
    let mut rows = Box::pin(
        client
            .query_raw(&prepared, params(&statement.params))
            .await
            .map_err(&failed)?,
    );
    let mut pending = Vec::with_capacity(BATCH_ROWS);
    let mut sent_any = false;
    loop {
        let row = rows.next().await.transpose().map_err(&failed)?;
        let end = row.is_none();
        pending.extend(row);
        if pending.len() == BATCH_ROWS || (end && (!pending.is_empty() || !sent_any)) {
            let next = batch(columns, &pending).map_err(StoreError::Internal)?;
            pending.clear();
            sent_any = true;
            if sender.send(Ok(next)).await.is_err() {
                let cancel = client.cancel_token();
                drop(rows);
                drop(deadpool_postgres::Object::take(client));
                let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
                return Ok(());
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// How many rows match: counted, or with `exact` false the planner's estimate.
pub(crate) async fn count(
    pool: &Pool,
    schema: &DatasetSchema,
    filter: &Predicate,
    exact: bool,
    timeout_ms: u64,
) -> Result<RowCount, StoreError> {
    if !exact && let Some(rows) = estimated(pool, schema, filter, timeout_ms).await? {
        return Ok(RowCount { rows, exact: false });
    }
    let statement = dataforge_sql::count(&PostgresDialect, schema, filter, None);
    let row = retried(pool, timeout_ms, &statement, |client, statement| {
        Box::pin(async move {
            let bound = params(&statement.params);
            let prepared = prepared(client, &statement.sql).await?;
            client.query_one(&prepared, &refs(&bound)).await
        })
    })
    .await?;
    match row.try_get::<_, Cell>(0) {
        Ok(Cell::Integer(rows)) => Ok(RowCount {
            rows: rows.max(0) as u64,
            exact: true,
        }),
        _ => Err(StoreError::Internal("a count answered no number".into())),
    }
}

/// The planner's estimate of the rows `filter` selects, once the table has statistics (`None`
/// before: its estimates would be guesses, and it is counted instead).
async fn estimated(
    pool: &Pool,
    schema: &DatasetSchema,
    filter: &Predicate,
    timeout_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let client = connection(pool).await?;
    if analyzed_rows(&client, schema).await?.is_none() {
        return Ok(None);
    }
    let filtered = dataforge_sql::where_clause(&PostgresDialect, schema, filter);
    let explain = format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM {}{}",
        dataforge_sql::quote(&schema.name),
        filtered.sql
    );
    let bound = params(&filtered.params);
    let row = client
        .query_one(&explain, &refs(&bound))
        .await
        .map_err(|e| store_error(e, timeout_ms))?;
    Ok(planned_rows(row.try_get::<_, Cell>(0).ok()))
}

/// The rows the statistics last counted, `None` for a table never analyzed (whose estimates are
/// guesses: it is counted instead).
async fn analyzed_rows(
    client: &deadpool_postgres::Object,
    schema: &DatasetSchema,
) -> Result<Option<u64>, StoreError> {
    let row = client
        .query_one(
            "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = to_regclass($1)",
            &[&dataforge_sql::quote(&schema.name)],
        )
        .await
        .map_err(crate::errors::statement_error)?;
    let rows: i64 = row.get(0);
    Ok((rows >= 0).then_some(rows as u64))
}

/// The "Plan Rows" of an `EXPLAIN (FORMAT JSON)`.
fn planned_rows(plan: Option<Cell<'_>>) -> Option<u64> {
    let Some(Cell::Text(text)) = plan else {
        return None;
    };
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    json.get(0)?
        .get("Plan")?
        .get("Plan Rows")?
        .as_f64()
        .map(|r| r as u64)
}

/// Statements kept prepared per connection, at most; past it the connection's are forgotten (a
/// read's SQL has one text per shape of request, values being parameters, but clients choose the
/// shapes).
const PREPARED_PER_CONNECTION: usize = 256;

/// `sql` prepared on this connection, once: a read by key is then one round trip, not two.
pub(crate) async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if client.statement_cache.size() >= PREPARED_PER_CONNECTION {
        client.statement_cache.clear();
    }
    client.prepare_cached(sql).await
}

/// Parameters as `query` takes them.
pub(crate) fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn postgres_types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres_types::ToSql + Sync))
        .collect()
}
