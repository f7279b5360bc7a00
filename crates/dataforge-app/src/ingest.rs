//! The write command: decode records into a batch, validate it column by column, and hand it to
//! the writer, all or nothing.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use dataforge_domain::records::{BodyError, BodyFormat};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::validate::{Violation, Violations, validate_batch};
use dataforge_domain::write::{ErrorMode, WriteOptions, WriteOutcome};

use crate::{App, AppError};

/// What an accepted write did.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSummary {
    pub outcome: WriteOutcome,
    /// Records left out because they broke the schema (`on_error=skip`).
    pub rejected: u64,
    /// The first violations of the rejected records, and their total.
    pub violations: Vec<Violation>,
    pub total_errors: u64,
}

impl App {
    /// Writes the records of a body (JSON object or array, or NDJSON) into a dataset as
    /// one transaction. Invalid records fail the request (or, with `on_error=skip`, are left out
    /// and reported); key conflicts are settled as `on_conflict` says. Decoding and validation are
    /// CPU work proportional to the body, so they run on the blocking pool, not the async executor.
    pub async fn ingest<B>(
        &self,
        dataset: &str,
        format: BodyFormat,
        body: B,
        options: WriteOptions,
    ) -> Result<IngestSummary, AppError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let schema = self.dataset(dataset)?;
        let checked = Arc::clone(&schema);
        let (batch, violations) = tokio::task::spawn_blocking(move || {
            decode_and_validate(&checked, format, body.as_ref(), options.on_error)
        })
        .await
        .map_err(|e| AppError::Internal(format!("decoding task failed: {e}")))??;
        let outcome = if batch.num_rows() > 0 {
            self.writer
                .write(schema, batch, options.on_conflict)
                .await?
        } else {
            WriteOutcome::default()
        };
        Ok(IngestSummary {
            outcome,
            rejected: violations.row_count(),
            total_errors: violations.total(),
            violations: violations.into_listed(),
        })
    }
}

/// The batch of a body, and the violations found: with [`ErrorMode::Reject`] any violation
/// fails the request; with [`ErrorMode::Skip`] the invalid records are filtered out.
fn decode_and_validate(
    schema: &DatasetSchema,
    format: BodyFormat,
    body: &[u8],
    on_error: ErrorMode,
) -> Result<(RecordBatch, Violations), AppError> {
    let decoded = format.decode(schema, body, 1).map_err(|e| match e {
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
        return Ok((decoded.batch, violations));
    }
    if on_error == ErrorMode::Reject {
        let total = violations.total();
        return Err(AppError::Invalid {
            violations: violations.into_listed(),
            total,
        });
    }
    let keep: BooleanArray = (0..decoded.batch.num_rows())
        .map(|i| Some(!violations.has_row(i as u64 + 1)))
        .collect();
    let valid = filter_record_batch(&decoded.batch, &keep)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((valid, violations))
}
