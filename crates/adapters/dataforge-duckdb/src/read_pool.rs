//! A fixed set of read connections. A read waits (asynchronously) for a free connection, then runs
//! on tokio's blocking thread pool, so queries never occupy the async executor's threads.

use std::sync::{Arc, Mutex};

use dataforge_domain::ports::StoreError;
use duckdb::Connection;
use tokio::sync::Semaphore;

use crate::store_error;

pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Source of replacement connections, should a read panic and lose its own.
    template: Mutex<Connection>,
}

impl ReadPool {
    pub(crate) fn new(template: &Connection, size: usize) -> Result<Self, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| template.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(ReadPool {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            template: Mutex::new(template.try_clone().map_err(store_error)?),
        })
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let popped = self
            .idle
            .lock()
            .map_err(|_| StoreError::Internal("read pool lock poisoned".into()))?
            .pop();
        match popped {
            Some(conn) => Ok(conn),
            None => self
                .template
                .lock()
                .map_err(|_| StoreError::Internal("read pool lock poisoned".into()))?
                .try_clone()
                .map_err(store_error),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `read` on a pooled connection off the async executor.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the database is closed".into()))?;
        let conn = self.take()?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let result = read(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}
