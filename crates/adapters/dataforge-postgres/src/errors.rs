//! PostgreSQL's failures as the store errors every engine answers with, so that clients see the
//! same problem whichever engine is wired in.

use dataforge_domain::ports::StoreError;
use tokio_postgres::error::SqlState;

/// A failure of a statement or a connection.
pub(crate) fn store_error(e: tokio_postgres::Error, timeout_ms: u64) -> StoreError {
    if e.is_closed() {
        return StoreError::Unavailable("the connection to PostgreSQL was lost".into());
    }
    let Some(db) = e.as_db_error() else {
        return StoreError::Unavailable(format!("PostgreSQL: {e}"));
    };
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED {
        StoreError::Timeout(timeout_ms)
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        StoreError::Unavailable(
            "the database is read-only (a replica, or a primary being replaced)".into(),
        )
    } else if *code == SqlState::DISK_FULL {
        StoreError::StorageFull("the PostgreSQL data directory".into())
    } else if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        StoreError::Unavailable(format!("PostgreSQL: {}", db.message()))
    } else {
        StoreError::Internal(format!("PostgreSQL: {} ({})", db.message(), code.code()))
    }
}

/// Whether the connection went away under a statement (a restart, a failover, a network cut), so
/// that a read may be tried again on a new one. Writes are not: their fate is unknown, and they
/// are answered 503.
pub(crate) fn lost(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code();
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        None => true,
    }
}

/// A failure of a statement that no timeout applies to (schema changes, small reads).
pub(crate) fn statement_error(e: tokio_postgres::Error) -> StoreError {
    store_error(e, 0)
}

/// No connection could be had from the pool.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Unavailable(
            "every connection is busy: no read connection was free in time (database.pool_size)"
                .into(),
        ),
        e => StoreError::Unavailable(format!("no connection to PostgreSQL: {e}")),
    }
}
