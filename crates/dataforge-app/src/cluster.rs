//! The clustering command: reorders a dataset's stored rows by its declared `cluster_by` fields.

use dataforge_domain::access::Permission;
use dataforge_domain::query::QueryError;

use crate::{App, AppError};

impl App {
    /// Rewrites the dataset's stored rows in `cluster_by` order; answers the rows rewritten.
    pub async fn cluster(&self, dataset: &str) -> Result<u64, AppError> {
        let (schema, _) = self.reach(dataset, Permission::Admin)?;
        if schema.cluster_by.is_empty() {
            return Err(QueryError::new(
                "dataset",
                format!(
                    "{} declares no `cluster_by`; add e.g. `cluster_by = [\"{}\"]` to its schema",
                    schema.name, schema.fields[0].name
                ),
            )
            .into());
        }
        Ok(self.writer.cluster(schema).await?)
    }
}
