//! The PostgreSQL store: the ports of `dataforge-domain` on a PostgreSQL primary that many
//! dataforge nodes share. No node keeps state another node's write can make stale: key checks
//! are the primary key constraint, counts and pages are queries, and preparing the datasets takes
//! an advisory lock. Reads use the SQL every SQL store shares (`dataforge-sql`) in PostgreSQL's
//! dialect.

mod config;
mod copy;
mod dialect;
mod errors;
mod migrate;
mod mutate;
mod partitions;
mod read;
mod replicas;
mod tables;
mod values;
mod write;

use std::sync::Arc;

use dataforge_domain::change::{Mutated, Mutation};
use dataforge_domain::ports::{
    BatchStream, BoxFuture, DatasetStorage, MigrationPolicy, MigrationReport, ReadOrigin,
    ReadYourWrites, RecordReader, RecordWriter, ReplicaState, RowCount, SchemaVersion, StagedWrite,
    Store, StoreError, StoreHealth,
};
use dataforge_domain::query::{Predicate, ReadPlan};
use dataforge_domain::schema::{Catalog, DatasetSchema};
use dataforge_domain::value::Value;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use config::PostgresConfig;

use crate::errors::{pool_error, statement_error};
use crate::replicas::Replicas;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid configuration: {0}")]
    Setting(String),
    #[error("database.url is not a PostgreSQL connection URL: {0}")]
    Url(String),
    #[error("cannot make the connection pool: {0}")]
    Pool(String),
}

/// The primary, through a pool of connections.
pub struct PostgresStore {
    primary: Pool,
    /// Where small writes wait to be committed together.
    groups: Arc<write::Groups>,
    reads: Arc<Reads>,
    /// How to open a connection of its own (schema changes and history run outside any async
    /// runtime, `dataforge migrate`).
    connect: tokio_postgres::Config,
}

impl PostgresStore {
    /// Makes the pool; connections open as they are first needed (a start that finds PostgreSQL
    /// down fails when it prepares the datasets, with PostgreSQL's message).
    pub fn open(config: &PostgresConfig) -> Result<Self, OpenError> {
        config.check().map_err(OpenError::Setting)?;
        let url = config.url.as_deref().unwrap_or_default();
        let mut connect: tokio_postgres::Config =
            url.parse().map_err(|e| OpenError::Url(format!("{e}")))?;
        connect.application_name("dataforge").options(format!(
            "-c statement_timeout={}",
            config.statement_timeout_ms
        ));
        let primary = pool(&connect, config)?;
        let mut replicas = Vec::new();
        for url in &config.replica_urls {
            let mut replica: tokio_postgres::Config =
                url.parse().map_err(|e| OpenError::Url(format!("{e}")))?;
            replica.application_name("dataforge").options(format!(
                "-c statement_timeout={}",
                config.statement_timeout_ms
            ));
            replicas.push((without_password(url), pool(&replica, config)?));
        }
        let reads = Arc::new(Reads {
            primary: primary.clone(),
            replicas: Arc::new(Replicas::new(replicas, config.replica_max_lag_ms)),
            timeout_ms: config.statement_timeout_ms,
        });
        Ok(PostgresStore {
            groups: Arc::new(write::Groups::new(primary.clone())),
            primary,
            reads,
            connect,
        })
    }

    /// Runs `work` on a connection of its own, on a runtime of its own: for the ports that block.
    fn blocking<T>(
        &self,
        work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async {
            let (mut client, connection) =
                self.connect.connect(NoTls).await.map_err(statement_error)?;
            let driver = tokio::spawn(connection);
            // a migration rewrites whole tables: statement_timeout is for reads
            let result = match client.batch_execute("SET statement_timeout = 0").await {
                Ok(()) => work(&mut client).await,
                Err(e) => Err(statement_error(e)),
            };
            drop(client);
            let _ = driver.await;
            result
        })
    }

    fn pool(&self) -> Pool {
        self.primary.clone()
    }
}

impl DatasetStorage for PostgresStore {
    fn prepare(
        &self,
        catalog: &Catalog,
        policy: MigrationPolicy,
    ) -> Result<MigrationReport, StoreError> {
        self.blocking(async |client| tables::prepare(client, catalog, policy).await)
    }

    fn history(&self) -> Result<Vec<SchemaVersion>, StoreError> {
        self.blocking(async |client| tables::history(&*client).await)
    }
}

impl RecordWriter for PostgresStore {
    fn begin(
        &self,
        dataset: Arc<DatasetSchema>,
    ) -> BoxFuture<'_, Result<Box<dyn StagedWrite>, StoreError>> {
        Box::pin(async move {
            let staged =
                write::PostgresWrite::begin(self.pool(), Arc::clone(&self.groups), dataset);
            Ok(Box::new(staged) as Box<dyn StagedWrite>)
        })
    }

    fn mutate(
        &self,
        dataset: Arc<DatasetSchema>,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<Mutated, StoreError>> {
        Box::pin(async move { mutate::mutate(&self.pool(), &dataset, &mutation).await })
    }

    fn cluster(&self, dataset: Arc<DatasetSchema>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move { mutate::cluster(&self.pool(), &dataset).await })
    }
}

/// Where reads go: a replica that may serve them, else the primary.
struct Reads {
    primary: Pool,
    replicas: Arc<Replicas>,
    timeout_ms: u64,
}

impl Reads {
    /// The pool of a read that must see every write up to `after` (any, for `None`), noted in
    /// `origin` when a request asks.
    fn pool(&self, after: Option<u64>, origin: Option<&ReadOrigin>) -> Pool {
        let (pool, served_by) = match self.replicas.pick(&self.primary, after) {
            Some(replica) => (replica, "replica"),
            None => (self.primary.clone(), "primary"),
        };
        metrics::counter!("dataforge_postgres_reads_total", "served_by" => served_by).increment(1);
        if let Some(origin) = origin {
            origin.note(served_by);
        }
        pool
    }
}

/// Reads held to a position of the primary (`None`: any replica that may serve).
struct ReadsAfter {
    reads: Arc<Reads>,
    after: Option<u64>,
    /// Where the request's reads were served from, when it asks.
    origin: Option<Arc<ReadOrigin>>,
}

impl ReadsAfter {
    fn pool(&self) -> Pool {
        self.reads.pool(self.after, self.origin.as_deref())
    }
}

impl RecordReader for ReadsAfter {
    fn get(
        &self,
        dataset: Arc<DatasetSchema>,
        key: Vec<Value>,
    ) -> BoxFuture<'_, Result<Option<arrow_array::RecordBatch>, StoreError>> {
        let pool = self.pool();
        Box::pin(async move { read::get(&pool, &dataset, &key, self.reads.timeout_ms).await })
    }

    fn scan(
        &self,
        dataset: Arc<DatasetSchema>,
        plan: ReadPlan,
    ) -> BoxFuture<'_, Result<BatchStream, StoreError>> {
        let pool = self.pool();
        Box::pin(read::scan(pool, dataset, plan, self.reads.timeout_ms))
    }

    fn count(
        &self,
        dataset: Arc<DatasetSchema>,
        filter: Predicate,
        exact: bool,
    ) -> BoxFuture<'_, Result<RowCount, StoreError>> {
        let pool = self.pool();
        Box::pin(async move {
            read::count(&pool, &dataset, &filter, exact, self.reads.timeout_ms).await
        })
    }
}

impl PostgresStore {
    fn any_reads(&self) -> ReadsAfter {
        ReadsAfter {
            reads: Arc::clone(&self.reads),
            after: None,
            origin: None,
        }
    }
}

impl RecordReader for PostgresStore {
    fn get(
        &self,
        dataset: Arc<DatasetSchema>,
        key: Vec<Value>,
    ) -> BoxFuture<'_, Result<Option<arrow_array::RecordBatch>, StoreError>> {
        let reads = self.any_reads();
        Box::pin(async move { reads.get(dataset, key).await })
    }

    fn scan(
        &self,
        dataset: Arc<DatasetSchema>,
        plan: ReadPlan,
    ) -> BoxFuture<'_, Result<BatchStream, StoreError>> {
        let reads = self.any_reads();
        Box::pin(async move { reads.scan(dataset, plan).await })
    }

    fn count(
        &self,
        dataset: Arc<DatasetSchema>,
        filter: Predicate,
        exact: bool,
    ) -> BoxFuture<'_, Result<RowCount, StoreError>> {
        let reads = self.any_reads();
        Box::pin(async move { reads.count(dataset, filter, exact).await })
    }
}

impl ReadYourWrites for PostgresStore {
    /// The primary's WAL position: a replica that has replayed it holds the write just answered.
    /// Without replicas every read is the primary's, and no token is needed.
    fn position(&self) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            if self.reads.replicas.is_empty() {
                return Ok(None);
            }
            let client = connection(&self.primary).await?;
            let row = client
                .query_one("SELECT pg_current_wal_lsn()::TEXT", &[])
                .await
                .map_err(statement_error)?;
            Ok(Some(row.get(0)))
        })
    }

    fn reading_after(
        &self,
        token: Option<&str>,
        origin: Arc<ReadOrigin>,
    ) -> Option<Arc<dyn RecordReader>> {
        Some(Arc::new(ReadsAfter {
            reads: Arc::clone(&self.reads),
            after: token.and_then(replicas::parse_lsn),
            origin: Some(origin),
        }))
    }
}

impl StoreHealth for PostgresStore {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let client = self.primary.get().await.map_err(|e| e.to_string())?;
            client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| format!("PostgreSQL does not answer: {e}"))
        })
    }

    fn replicas(&self) -> Vec<ReplicaState> {
        self.reads.replicas.states()
    }

    fn observe(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let status = self.primary.status();
            metrics::gauge!("dataforge_postgres_connections").set(status.size as f64);
            metrics::gauge!("dataforge_postgres_connections_idle").set(status.available as f64);
        })
    }
}

/// A pool of connections to one server.
fn pool(connect: &tokio_postgres::Config, config: &PostgresConfig) -> Result<Pool, OpenError> {
    let manager = Manager::from_config(
        connect.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size as usize)
        .runtime(Runtime::Tokio1)
        // a request waits for a busy pool as long as a statement may run, then gets 503
        .wait_timeout(Some(std::time::Duration::from_millis(
            config.statement_timeout_ms,
        )))
        .build()
        .map_err(|e| OpenError::Pool(e.to_string()))
}

/// A URL as logs and `/health/ready` show it: its password replaced.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store for PostgresStore {
    /// Closes the primary's pool and every replica's, and stops watching the replicas: no
    /// connection of the store's stays open (small writes still queued are answered 503).
    fn close(&self) {
        self.reads.replicas.close();
        self.primary.close();
    }
}

/// A pooled connection, or why there is none.
async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(pool_error)
}
