//! Readiness and gauges for operators: the store is ready when its writer runs and a read
//! connection answers; its gauges (writer queue, file and key index sizes, DuckDB memory) are set
//! when metrics are shown, so nothing is measured between scrapes.

use dataforge_domain::ports::{BoxFuture, StoreHealth};

use crate::DuckDbStore;

impl StoreHealth for DuckDbStore {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            // DuckDB keeps a deleted file open and answers from it; what it writes then is lost
            if let Err(e) = std::fs::metadata(&self.path) {
                return Err(format!(
                    "the database file {} is gone: {e}",
                    self.path.display()
                ));
            }
            self.writer_state()?;
            self.readers
                .run(|conn| conn.execute_batch("SELECT 1").map_err(crate::store_error))
                .await
                .map_err(|e| format!("the database does not answer: {e}"))
        })
    }

    fn observe(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(queued) = self.writer_state() {
                metrics::gauge!("dataforge_writer_queue_depth").set(queued as f64);
            }
            let file = std::fs::metadata(&self.path).map_or(0, |m| m.len());
            metrics::gauge!("dataforge_database_file_bytes").set(file as f64);
            if let Some(index) = self.index.get() {
                let (used, reserved) = index.space();
                metrics::gauge!("dataforge_key_index_used_bytes").set(used as f64);
                metrics::gauge!("dataforge_key_index_free_bytes")
                    .set(reserved.saturating_sub(used) as f64);
            }
            let memory = self
                .readers
                .run(|conn| {
                    conn.query_row(
                        "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory()",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                    .map_err(crate::store_error)
                })
                .await;
            if let Ok(bytes) = memory {
                metrics::gauge!("dataforge_duckdb_memory_bytes").set(bytes as f64);
            }
        })
    }
}

impl DuckDbStore {
    /// The writes waiting in the writer's queue, or why there is no writer.
    fn writer_state(&self) -> Result<usize, String> {
        let writer = self
            .writer
            .lock()
            .map_err(|_| "the writer's lock is poisoned".to_owned())?;
        match writer.as_ref() {
            None => Err("the writer is stopped (the server is shutting down)".into()),
            Some(w) if w.thread.is_finished() || w.queue.is_closed() => {
                Err("the writer thread has stopped; see the log".into())
            }
            Some(w) => Ok(w.queue.max_capacity() - w.queue.capacity()),
        }
    }
}
