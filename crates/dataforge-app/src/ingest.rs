//! The write command: decode records into a batch, validate it column by column, and hand it to
//! the writer, all or nothing.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::records::{BodyError, decode_json};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::validate::validate_batch;

use crate::{App, AppError};

/// What an accepted write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSummary {
    pub inserted: u64,
}

impl App {
    /// Inserts the records of a JSON body (one object or an array of objects) into a dataset:
    /// every one, or none if any is invalid or any key conflicts. Decoding and validation are CPU
    /// work proportional to the body, so they run on the blocking pool, not the async executor.
    pub async fn ingest_json<B>(&self, dataset: &str, body: B) -> Result<IngestSummary, AppError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let schema = self.dataset(dataset)?;
        let checked = Arc::clone(&schema);
        let batch =
            tokio::task::spawn_blocking(move || decode_and_validate(&checked, body.as_ref()))
                .await
                .map_err(|e| AppError::Internal(format!("decoding task failed: {e}")))??;
        let inserted = self.writer.insert(schema, batch).await?;
        Ok(IngestSummary { inserted })
    }
}

/// The batch of a JSON body if every record is valid; otherwise every violation found.
fn decode_and_validate(schema: &DatasetSchema, body: &[u8]) -> Result<RecordBatch, AppError> {
    let decoded = decode_json(schema, body, 1).map_err(|e| match e {
        BodyError::Batch(message) => AppError::Internal(message),
        other => AppError::MalformedBody(other.to_string()),
    })?;
    let mut violations = decoded.violations;
    validate_batch(
        schema,
        &decoded.batch,
        1,
        &decoded.rejected,
        &mut violations,
    );
    if violations.is_empty() {
        Ok(decoded.batch)
    } else {
        let total = violations.total();
        Err(AppError::Invalid {
            violations: violations.into_listed(),
            total,
        })
    }
}
