//! The ports: what the application needs from storage, as traits. Adapters (embedded DuckDB now,
//! PostgreSQL later) implement them; nothing above this line knows which one is wired in.
//!
//! The methods return boxed futures so adapters decide where blocking work runs (the DuckDB
//! adapter runs it on its own threads, never on the async executor) and so the composition root
//! can pick an adapter at run time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::change::Mutation;
use crate::query::{Predicate, ReadPlan};
use crate::schema::{Catalog, DatasetSchema};
use crate::value::Value;
use crate::write::{ConflictMode, WriteOutcome};

/// A future a port returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Creates and checks the storage for every dataset at start.
pub trait DatasetStorage: Send + Sync {
    /// Creates what is missing; does nothing for datasets already stored as declared; fails with
    /// [`StoreError::SchemaMismatch`] naming every difference otherwise.
    fn prepare(&self, catalog: &Catalog) -> Result<(), StoreError>;
}

/// The write side.
pub trait RecordWriter: Send + Sync {
    /// Starts a write to `dataset`. Its batches are staged as they come and stored together when
    /// it is committed; a write dropped without a commit stores nothing.
    fn begin(
        &self,
        dataset: Arc<DatasetSchema>,
    ) -> BoxFuture<'_, Result<Box<dyn StagedWrite>, StoreError>>;

    /// Applies `mutation` to every record its filter selects, as one transaction, and answers how
    /// many records it changed. More than `max_affected` fails with [`StoreError::TooMany`] and
    /// changes nothing. A read after the answer sees the change, on every read path.
    fn mutate(
        &self,
        dataset: Arc<DatasetSchema>,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Rewrites the dataset's stored rows in the order of its `cluster_by` fields, so filters on
    /// them read a small part of the table. The records do not change; writes wait meanwhile.
    /// Answers the number of rows rewritten.
    fn cluster(&self, dataset: Arc<DatasetSchema>) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// One write in progress.
pub trait StagedWrite: Send {
    /// Stages a batch (shaped as the dataset's Arrow schema, already validated).
    fn stage(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Stores every staged row as one transaction, once durable. With [`ConflictMode::Error`], a
    /// key that exists or repeats among the staged rows fails the whole write with
    /// [`StoreError::Conflict`] and nothing is stored.
    fn commit(
        self: Box<Self>,
        mode: ConflictMode,
    ) -> BoxFuture<'static, Result<WriteOutcome, StoreError>>;
}

/// The read side.
pub trait RecordReader: Send + Sync {
    /// The record with this primary key (values in key order), all fields.
    fn get(
        &self,
        dataset: Arc<DatasetSchema>,
        key: Vec<Value>,
    ) -> BoxFuture<'_, Result<Option<RecordBatch>, StoreError>>;

    /// Starts a read whose batches have the columns of [`ReadPlan::columns`]. Resolves once
    /// storage has begun to answer (its first batch is ready), so a failure or a timeout before
    /// that is an error here, not a broken stream.
    fn scan(
        &self,
        dataset: Arc<DatasetSchema>,
        plan: ReadPlan,
    ) -> BoxFuture<'_, Result<BatchStream, StoreError>>;

    /// How many rows match `filter`; with `exact` false, an estimate may be answered instead.
    fn count(
        &self,
        dataset: Arc<DatasetSchema>,
        filter: Predicate,
        exact: bool,
    ) -> BoxFuture<'_, Result<RowCount, StoreError>>;
}

/// The batches of a read, pulled by its consumer on a blocking thread. Dropping it stops the
/// read and frees what it holds in storage (a connection, a running query).
pub struct BatchStream(Box<dyn Iterator<Item = Result<RecordBatch, StoreError>> + Send>);

impl BatchStream {
    pub fn new(
        batches: impl Iterator<Item = Result<RecordBatch, StoreError>> + Send + 'static,
    ) -> Self {
        BatchStream(Box::new(batches))
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// A count of rows, exact or estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    pub rows: u64,
    pub exact: bool,
}

/// Why a key conflicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictReason {
    /// A stored record already has this key.
    Exists,
    /// The key appears more than once in the request.
    Repeated,
}

/// One conflicting key, values in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictingKey {
    pub key: Vec<Value>,
    pub reason: ConflictReason,
}

/// A merged record inserted under a new key without a value for a required field.
#[derive(Debug, Clone, PartialEq)]
pub struct IncompleteRecord {
    /// 1-based position among the records written.
    pub row: u64,
    pub key: Vec<Value>,
    pub field: String,
}

/// What storage can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{total} primary key(s) already exist or repeat in the request")]
    Conflict {
        /// The first conflicting keys (at most 100).
        keys: Vec<ConflictingKey>,
        total: u64,
    },
    /// Stored tables differ from their schemas; each difference starts with its dataset's name.
    #[error("stored tables differ from their schemas (migrations are not supported yet): {}", differences.join("; "))]
    SchemaMismatch { differences: Vec<String> },
    /// A change would touch more records than its `max_affected`; nothing was changed.
    #[error("the change would touch {affected} records, more than max_affected={max}")]
    TooMany { affected: u64, max: u64 },
    /// Merged records whose key is not stored lack a required field; nothing was written.
    #[error("{total} new record(s) lack a required field")]
    Incomplete {
        /// The first (at most 100): request position (1-based), key, field.
        records: Vec<IncompleteRecord>,
        total: u64,
    },
    #[error("storage is not accepting work: {0}")]
    Unavailable(String),
    /// A read ran past the configured query timeout and was stopped.
    #[error("the query ran longer than {0} ms and was stopped")]
    Timeout(u64),
    #[error("storage failure: {0}")]
    Internal(String),
}
