//! The write command: decode records into a batch, validate it column by column, and hand it to
//! the writer, all or nothing.

use dataforge_domain::records::decode_json_rows;
use dataforge_domain::validate::validate_batch;

use crate::{App, AppError};

/// What an accepted write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSummary {
    pub inserted: u64,
}

impl App {
    /// Inserts JSON records (objects) into a dataset: every one, or none if any is invalid or any
    /// key conflicts.
    pub async fn ingest_json(
        &self,
        dataset: &str,
        records: Vec<serde_json::Value>,
    ) -> Result<IngestSummary, AppError> {
        let schema = self.dataset(dataset)?;
        if records.is_empty() {
            return Err(AppError::MalformedBody(
                "the request holds no records".into(),
            ));
        }
        let decoded = decode_json_rows(&schema, &records, 1)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        drop(records);
        let mut violations = decoded.violations;
        validate_batch(
            &schema,
            &decoded.batch,
            1,
            &decoded.rejected,
            &mut violations,
        );
        if !violations.is_empty() {
            let total = violations.total();
            return Err(AppError::Invalid {
                violations: violations.into_listed(),
                total,
            });
        }
        let inserted = self.writer.insert(schema, decoded.batch).await?;
        Ok(IngestSummary { inserted })
    }
}
