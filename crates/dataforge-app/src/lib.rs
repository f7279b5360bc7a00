//! The dataforge use cases. Commands change data ([`ingest`], and `cluster` reorders it); queries
//! read it ([`read`]). Both
//! work on any storage that implements the domain ports, and know nothing of HTTP.

mod access;
pub mod change;
mod cluster;
mod consistency;
mod error;
pub mod ingest;
pub mod read;

use std::collections::BTreeMap;
use std::sync::Arc;

use dataforge_domain::access::{Access, Denied, Permission};
use dataforge_domain::ports::{ReadYourWrites, RecordReader, RecordWriter, StoreHealth};
use dataforge_domain::query::QueryLimits;
use dataforge_domain::records::BatchDecoder;
use dataforge_domain::schema::{Catalog, DatasetSchema};

pub use error::AppError;

/// What the use cases run against, given once by the composition root.
#[derive(Clone)]
pub struct App {
    catalog: Arc<Catalog>,
    writer: Arc<dyn RecordWriter>,
    reader: Arc<dyn RecordReader>,
    decoder: Arc<dyn BatchDecoder>,
    limits: QueryLimits,
    /// The schema version storage applied for each dataset.
    versions: Arc<BTreeMap<String, u64>>,
    /// The credential the use cases act for (see [`App::acting_as`]); everything by default.
    access: Arc<Access>,
    /// Readiness and gauges of the store, when it reports them.
    health: Option<Arc<dyn StoreHealth>>,
    /// Consistency tokens of a store whose reads may come from replicas.
    tokens: Option<Arc<dyn ReadYourWrites>>,
}

impl App {
    pub fn new(
        catalog: Arc<Catalog>,
        writer: Arc<dyn RecordWriter>,
        reader: Arc<dyn RecordReader>,
        decoder: Arc<dyn BatchDecoder>,
        limits: QueryLimits,
    ) -> Self {
        App {
            catalog,
            writer,
            reader,
            decoder,
            limits,
            versions: Arc::default(),
            access: Arc::new(Access::everything()),
            health: None,
            tokens: None,
        }
    }

    /// The store's readiness and gauges (see [`App::ready`], [`App::observe`]).
    pub fn with_health(mut self, health: Arc<dyn StoreHealth>) -> Self {
        self.health = Some(health);
        self
    }

    /// Whether the store can serve (`/health/ready`).
    pub async fn ready(&self) -> Result<(), String> {
        match &self.health {
            Some(health) => health.ready().await,
            None => Ok(()),
        }
    }

    /// Updates the store's gauges before metrics are shown; needs `admin` on every dataset.
    pub async fn observe(&self) -> Result<(), AppError> {
        if !self.access.may("*", Permission::Admin) {
            return Err(AppError::Denied(Denied::Permission {
                credential: self.access.name.clone(),
                dataset: "*".into(),
                permission: Permission::Admin,
            }));
        }
        if let Some(health) = &self.health {
            health.observe().await;
        }
        Ok(())
    }

    /// The schema versions storage applied at start (see `DatasetStorage::prepare`).
    pub fn with_versions(mut self, versions: BTreeMap<String, u64>) -> Self {
        self.versions = Arc::new(versions);
        self
    }

    /// The applied schema version of a dataset.
    pub fn version(&self, dataset: &str) -> Option<u64> {
        self.versions.get(dataset).copied()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A dataset by name, or [`AppError::UnknownDataset`].
    pub fn dataset(&self, name: &str) -> Result<Arc<DatasetSchema>, AppError> {
        self.catalog
            .get(name)
            .cloned()
            .ok_or_else(|| AppError::UnknownDataset {
                name: name.to_owned(),
                known: self.catalog.iter().map(|d| d.name.clone()).collect(),
            })
    }
}
