//! The write command: decode a body into batches (through the decoder port), validate each batch
//! column by column, and hand the valid records to the writer as one transaction.

use std::io::Read;
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::concat::concat_batches;
use arrow_select::filter::filter_record_batch;
use dataforge_domain::records::{BATCH_ROWS, BodyError, BodyFormat, DecodedBatch, Halt};
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
    /// Writes the records of a body into a dataset as one transaction. Invalid records fail the
    /// request (or, with `on_error=skip`, are left out and reported); key conflicts are settled as
    /// `on_conflict` says. Decoding and validation are CPU work proportional to the body, so they
    /// run on the blocking pool, not the async executor.
    pub async fn ingest<B>(
        &self,
        dataset: &str,
        format: BodyFormat,
        body: B,
        options: WriteOptions,
    ) -> Result<IngestSummary, AppError>
    where
        B: Read + Send + 'static,
    {
        let schema = self.dataset(dataset)?;
        let checked = Arc::clone(&schema);
        let decoder = Arc::clone(&self.decoder);
        let (batch, violations) = tokio::task::spawn_blocking(move || {
            let mut body = body;
            let mut checker = Checker::new(&checked, options.on_error);
            let read = decoder.decode(format, &checked, &mut body, BATCH_ROWS, &mut |decoded| {
                checker.check(decoded)
            });
            match read {
                Ok(_) | Err(BodyError::Halted) => checker.finish(),
                Err(BodyError::Batch(message)) => Err(AppError::Internal(message)),
                Err(other) => Err(AppError::MalformedBody(other.to_string())),
            }
        })
        .await
        .map_err(|e| AppError::Internal(format!("decoding task failed: {e}")))??;
        let outcome = match batch {
            Some(batch) => {
                self.writer
                    .write(schema, batch, options.on_conflict)
                    .await?
            }
            None => WriteOutcome::default(),
        };
        Ok(IngestSummary {
            outcome,
            rejected: violations.row_count(),
            total_errors: violations.total(),
            violations: violations.into_listed(),
        })
    }
}

/// Validates decoded batches as they come, keeping the records to write.
struct Checker<'s> {
    schema: &'s DatasetSchema,
    on_error: ErrorMode,
    violations: Violations,
    kept: Vec<RecordBatch>,
    failure: Option<AppError>,
}

impl<'s> Checker<'s> {
    fn new(schema: &'s DatasetSchema, on_error: ErrorMode) -> Self {
        Checker {
            schema,
            on_error,
            violations: Violations::default(),
            kept: Vec::new(),
            failure: None,
        }
    }

    fn check(&mut self, decoded: DecodedBatch) -> Result<(), Halt> {
        let DecodedBatch {
            batch,
            first_row,
            mut violations,
            rejected,
        } = decoded;
        validate_batch(self.schema, &batch, first_row, &rejected, &mut violations);
        let clean = violations.is_empty();
        if !clean && self.on_error == ErrorMode::Skip {
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|i| Some(!violations.has_row(first_row + i as u64)))
                .collect();
            match filter_record_batch(&batch, &keep) {
                Ok(valid) if valid.num_rows() > 0 => self.kept.push(valid),
                Ok(_) => {}
                Err(e) => {
                    self.failure = Some(AppError::Internal(e.to_string()));
                    return Err(Halt);
                }
            }
        } else if clean && (self.violations.is_empty() || self.on_error == ErrorMode::Skip) {
            self.kept.push(batch);
        } else {
            // rejecting: keep reading to count every error, but nothing will be written
            self.kept.clear();
        }
        self.violations.merge(violations);
        Ok(())
    }

    /// The records to write (if any) and every violation found.
    fn finish(self) -> Result<(Option<RecordBatch>, Violations), AppError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if !self.violations.is_empty() && self.on_error == ErrorMode::Reject {
            let total = self.violations.total();
            return Err(AppError::Invalid {
                violations: self.violations.into_listed(),
                total,
            });
        }
        let batch = match self.kept.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(
                concat_batches(&many[0].schema(), many)
                    .map_err(|e| AppError::Internal(e.to_string()))?,
            ),
        };
        Ok((batch, self.violations))
    }
}
