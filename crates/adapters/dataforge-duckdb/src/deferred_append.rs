//! How deferred writes reach their tables: from the writer while it runs (records in memory, the
//! changed keys' latest records read from the key index) and from the journal at start.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use dataforge_domain::ports::StoreError;
use duckdb::Connection;

use dataforge_key_index::{DeferredWrites, KeyEncoder};

use crate::batches::append_batches;
use crate::sequence;
use crate::sql::{column_list, key_matches, quote};
use crate::store_error;

/// Brings the tables in step with deferred writes, in one DuckDB transaction that records `seq`
/// as its sequence number and is rolled back if any part fails: the rows of changed keys are
/// deleted and their latest records appended, then the new records (less those whose key changed
/// since, which the first part wrote).
pub(crate) fn write_deferred(
    conn: &Connection,
    writes: &[DeferredWrites],
    seq: u64,
) -> Result<(), StoreError> {
    let started = Instant::now();
    conn.execute_batch("BEGIN TRANSACTION")
        .map_err(store_error)?;
    let mut appended = started;
    let written = writes
        .iter()
        .try_for_each(|w| write_dataset(conn, w))
        .and_then(|()| {
            appended = Instant::now();
            conn.prepare_cached(&sequence::update_statement())
                .and_then(|mut update| update.execute([seq as i64]))
                .map_err(store_error)
        })
        .and_then(|_| conn.execute_batch("COMMIT").map_err(store_error));
    if written.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        return written;
    }
    let (ended, rows) = (
        Instant::now(),
        writes.iter().map(DeferredWrites::rows).sum::<usize>(),
    );
    metrics::histogram!("dataforge_deferred_append_seconds")
        .record(ended.duration_since(started).as_secs_f64());
    tracing::debug!(
        rows,
        append_ms = appended.duration_since(started).as_secs_f64() * 1e3,
        commit_ms = ended.duration_since(appended).as_secs_f64() * 1e3,
        "appended deferred writes"
    );
    written
}

/// [`write_deferred`] for one dataset, inside the open transaction.
fn write_dataset(conn: &Connection, writes: &DeferredWrites) -> Result<(), StoreError> {
    let schema = &writes.schema;
    if writes.changed.is_empty() {
        return append_batches(conn, &schema.name, &writes.appended);
    }
    // the keys were encoded under this schema (at start, the stored one, which a migration may
    // change next), not necessarily the one the index was opened with
    let encoder = KeyEncoder::new(schema)?;
    const CHANGED_KEYS: &str = "changed_keys";
    let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {CHANGED_KEYS} AS SELECT {keys} FROM {} LIMIT 0",
        quote(&schema.name)
    ))
    .map_err(store_error)?;
    let key_schema = schema
        .arrow_schema()
        .project(&schema.primary_key)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let key_batch = RecordBatch::try_new(Arc::new(key_schema), encoder.columns(&writes.changed)?)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let mut appender = conn
        .appender_to_catalog_and_db(CHANGED_KEYS, "temp", "main")
        .map_err(store_error)?;
    appender
        .append_record_batch(key_batch)
        .map_err(store_error)?;
    appender.flush().map_err(store_error)?;
    drop(appender);
    conn.execute_batch(&format!(
        "DELETE FROM {} t WHERE EXISTS (SELECT 1 FROM temp.{CHANGED_KEYS} s WHERE {}); DROP TABLE temp.{CHANGED_KEYS}",
        quote(&schema.name),
        key_matches(schema)
    ))
    .map_err(store_error)?;
    let changed: HashSet<&[u8]> = writes.changed.iter().map(Vec::as_slice).collect();
    let mut batches = writes.current.clone();
    for batch in &writes.appended {
        let key_columns: Vec<ArrayRef> = schema
            .primary_key
            .iter()
            .map(|&c| Arc::clone(batch.column(c)))
            .collect();
        let keep: BooleanArray = encoder
            .encode(&key_columns)?
            .iter()
            .map(|k| Some(!changed.contains(k.as_slice())))
            .collect();
        batches.push(
            filter_record_batch(batch, &keep).map_err(|e| StoreError::Internal(e.to_string()))?,
        );
    }
    batches.retain(|b| b.num_rows() > 0);
    append_batches(conn, &schema.name, &batches)
}
