//! The ports: what the application needs from storage, as traits. Adapters (embedded DuckDB now,
//! PostgreSQL later) implement them; nothing above this line knows which one is wired in.
//!
//! The methods return boxed futures so adapters decide where blocking work runs (the DuckDB
//! adapter runs it on its own threads, never on the async executor) and so the composition root
//! can pick an adapter at run time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::change::{Mutated, Mutation};
use crate::query::{Predicate, ReadPlan};
use crate::schema::evolve::{DatasetPlan, Risk};
use crate::schema::{Catalog, DatasetSchema};
use crate::value::Value;
use crate::write::{ConflictMode, WriteOutcome};

/// A future a port returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a start (or `dataforge migrate`) may do to bring stored datasets in line with their
/// schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationPolicy {
    /// Apply the plan (false: only make it).
    pub apply: bool,
    /// Apply destructive steps too (otherwise a plan with one is refused).
    pub allow_destructive: bool,
    /// Asked for by `dataforge migrate`, not a start: it may create datasets in a database that
    /// holds undeclared ones (a start refuses, as the schemas are likely the wrong directory).
    pub deliberate: bool,
}

impl MigrationPolicy {
    /// What `serve` does: safe and checked steps, never destructive ones.
    pub const SERVE: MigrationPolicy = MigrationPolicy {
        apply: true,
        allow_destructive: false,
        deliberate: false,
    };
}

/// What preparing the storage found and did.
#[derive(Debug, Clone, Default)]
pub struct MigrationReport {
    /// Datasets whose storage was created.
    pub created: Vec<String>,
    /// Datasets whose stored schema differs from the declared one, with the steps.
    pub plans: Vec<DatasetPlan>,
    /// Datasets stored but not declared (kept unless a destructive migration drops them).
    pub undeclared: Vec<String>,
    /// The schema version of every declared dataset once prepared.
    pub versions: BTreeMap<String, u64>,
    /// Whether the plans were applied.
    pub applied: bool,
}

impl MigrationReport {
    /// Whether there is anything to do.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.plans.is_empty() && self.undeclared.is_empty()
    }

    /// The plan as text: one line per step, under its dataset.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for name in &self.created {
            lines.push(format!("{name}:\n  [safe] create the dataset"));
        }
        for plan in &self.plans {
            lines.push(format!("{}:", plan.dataset));
            for step in &plan.steps {
                lines.push(format!("  [{}] {}", step.risk, step.description));
            }
        }
        for name in &self.undeclared {
            lines.push(format!(
                "{name}:\n  [destructive] drop the dataset (stored, but declared in no schema file) and its data"
            ));
        }
        lines.join("\n")
    }

    /// Why `policy` may not apply the plan, if it may not.
    pub fn refusal(&self, policy: MigrationPolicy) -> Option<StoreError> {
        let destructive = self
            .plans
            .iter()
            .any(|p| p.risk() == Some(Risk::Destructive));
        if destructive && !policy.allow_destructive {
            return Some(StoreError::MigrationRefused(format!(
                "the schemas ask for destructive changes to stored data, which a start never applies:\n{}\n\
                 review them, then run `dataforge migrate --apply --allow-destructive` (with the same --schemas and --db), \
                 or change the schema files back",
                self.describe()
            )));
        }
        if !self.created.is_empty() && !self.undeclared.is_empty() && !policy.deliberate {
            return Some(StoreError::MigrationRefused(format!(
                "the database holds datasets no schema file declares ({}) and the schemas declare datasets it does not hold ({}): \
                 are these the right schemas for this database? A start does not create datasets beside others it does not know; \
                 run `dataforge migrate --apply` (with the same --schemas and --db) to create them deliberately",
                self.undeclared.join(", "),
                self.created.join(", ")
            )));
        }
        None
    }
}

/// One applied schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaVersion {
    pub dataset: String,
    pub version: u64,
    /// When it was applied, RFC 3339.
    pub applied_at: String,
    /// The schema's document (see [`crate::schema::to_document`]).
    pub document: serde_json::Value,
}

/// Creates, checks and migrates the storage for every dataset at start.
pub trait DatasetStorage: Send + Sync {
    /// Compares each stored dataset with its schema and plans the changes; with `policy.apply`,
    /// creates what is missing and applies safe and checked steps (and destructive ones when
    /// allowed). Fails with [`StoreError::MigrationRefused`] when a step is not allowed or
    /// stored records break a checked one; nothing is changed then.
    fn prepare(
        &self,
        catalog: &Catalog,
        policy: MigrationPolicy,
    ) -> Result<MigrationReport, StoreError>;

    /// Every schema version applied, oldest first.
    fn history(&self) -> Result<Vec<SchemaVersion>, StoreError>;
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
    ) -> BoxFuture<'_, Result<Mutated, StoreError>>;

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

impl ConflictingKey {
    /// `{"key": {field: value, ...}, "reason": "exists" | "repeated"}`, as clients are shown it.
    pub fn to_json(&self, dataset: &crate::schema::DatasetSchema) -> serde_json::Value {
        let key: serde_json::Map<String, serde_json::Value> = dataset
            .key_fields()
            .zip(&self.key)
            .map(|(field, value)| (field.name.clone(), value.to_json()))
            .collect();
        serde_json::json!({ "key": key, "reason": self.reason })
    }
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
    /// A migration is not allowed or stored records break it; the message says why, with the
    /// plan and what to run.
    #[error("{0}")]
    MigrationRefused(String),
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
    /// The disk holding the named file is full; nothing of the write was stored, and writes
    /// succeed again once space is freed.
    #[error("the disk holding {0} is full; nothing was written")]
    StorageFull(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

/// Why a request's credential was refused (answered `401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this server requires a credential: send `Authorization: Bearer <API key or JWT>`")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

/// Turns the bearer token a request presents (if any) into the access it carries.
pub trait Authenticator: Send + Sync {
    fn authenticate(
        &self,
        bearer: Option<&str>,
    ) -> Result<std::sync::Arc<crate::access::Access>, AuthError>;
}

/// Reads that may come from replicas behind the primary, and how a client still reads its own
/// writes: a write's answer carries a token of the primary's position after it, and a read that
/// presents the token is served where everything up to it is visible.
pub trait ReadYourWrites: Send + Sync {
    /// The primary's position now (asked once a write is acknowledged); `None` for a store whose
    /// every read sees every acknowledged write.
    fn position(&self) -> BoxFuture<'_, Result<Option<String>, StoreError>>;

    /// A reader for one request: its reads see every write up to `token` (when given and
    /// understood) and note in `origin` where they were served from. `None` when the store has no
    /// say in either (its own reads serve).
    fn reading_after(
        &self,
        token: Option<&str>,
        origin: Arc<ReadOrigin>,
    ) -> Option<Arc<dyn RecordReader>>;
}

/// Where a request's reads were served from (`primary` or `replica`), as its store notes it, for
/// the answer's `Dataforge-Served-By`.
#[derive(Debug, Default)]
pub struct ReadOrigin(std::sync::OnceLock<&'static str>);

impl ReadOrigin {
    /// Notes the first place a read of the request was served from.
    pub fn note(&self, served_by: &'static str) {
        let _ = self.0.set(served_by);
    }

    pub fn served_by(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

/// What a store reports of one read replica (`/health/ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaState {
    /// Where it is (without credentials).
    pub url: String,
    /// `ok`, `lagging` (further behind than allowed: skipped for reads) or `down`.
    pub state: &'static str,
}

/// A whole store, as the composition root opens it for `database.engine`: every port above, and
/// a way to stop it.
pub trait Store:
    DatasetStorage + RecordWriter + RecordReader + StoreHealth + ReadYourWrites
{
    /// Finishes queued writes and releases the database. Blocking: call it off the async
    /// executor. Later writes fail as unavailable.
    fn close(&self);
}

/// What operators ask of the store: whether it can serve, and how full it is.
pub trait StoreHealth: Send + Sync {
    /// `Ok` when the database answers and the writer runs; else why not.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Sets the store's gauges (queue depth, file and index sizes, memory in use) through the
    /// `metrics` facade, just before they are shown.
    fn observe(&self) -> BoxFuture<'_, ()>;

    /// The read replicas and their states (none for a store without replicas).
    fn replicas(&self) -> Vec<ReplicaState> {
        Vec::new()
    }
}
