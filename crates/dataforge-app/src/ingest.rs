//! The write command: decode a body into batches (through the decoder port), validate each batch
//! column by column, and hand the valid records to the writer as one transaction.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use dataforge_domain::access::{Permission, Reach};
use dataforge_domain::ports::StagedWrite;
use dataforge_domain::records::{
    BATCH_ROWS, BatchDecoder, BodyError, BodyFormat, DecodedBatch, Halt, ReadOptions,
};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::validate::{Violation, Violations, validate_batch};
use dataforge_domain::write::{ConflictMode, ErrorMode, WriteOptions, WriteOutcome};

use crate::access::{check_batch, check_conflict_mode};
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

/// Validated batches that may wait between the decoder and the writer.
const PIPELINE_DEPTH: usize = 2;

impl App {
    /// Writes the records of a body into a dataset as one transaction. The body is decoded and
    /// validated batch by batch on the blocking pool while earlier batches are staged by the
    /// writer, so memory does not grow with the body. Invalid records fail the request (or, with
    /// `on_error=skip`, are left out and reported); key conflicts are settled as `on_conflict` says.
    pub async fn ingest<B>(
        &self,
        dataset: &str,
        format: BodyFormat,
        read: ReadOptions,
        body: B,
        options: WriteOptions,
    ) -> Result<IngestSummary, AppError>
    where
        B: Read + Send + 'static,
    {
        self.ingest_counted(dataset, format, read, body, options, Arc::default())
            .await
    }

    /// [`App::ingest`], counting the records decoded so far in `seen` (for progress reports).
    pub async fn ingest_counted<B>(
        &self,
        dataset: &str,
        format: BodyFormat,
        read: ReadOptions,
        body: B,
        options: WriteOptions,
        seen: Arc<AtomicU64>,
    ) -> Result<IngestSummary, AppError>
    where
        B: Read + Send + 'static,
    {
        let (schema, reach) = self.reach_to_write(dataset, options)?;
        let (valid, mut batches) = tokio::sync::mpsc::channel::<RecordBatch>(PIPELINE_DEPTH);
        let decoding = {
            let schema = decoded_as(&schema, options);
            let decoder = Arc::clone(&self.decoder);
            tokio::task::spawn_blocking(move || {
                let mut body = body;
                decode_checked(
                    &*decoder,
                    (format, &read),
                    Checker::new(&schema, &reach, options.on_error),
                    &mut body,
                    &seen,
                    |batch| valid.blocking_send(batch).map_err(|_| Halt),
                )
            })
        };

        // stage batches as they come; on a staging failure stop reading (the decoder halts)
        let mut write = Staging::default();
        while let Some(batch) = batches.recv().await {
            if !write.stage(self, &schema, batch).await {
                break;
            }
        }
        drop(batches);
        let decoded = decoding
            .await
            .map_err(|e| AppError::Internal(format!("decoding task failed: {e}")))?;
        counted(&schema, format, write.finish(decoded, options).await)
    }

    /// [`App::ingest`] for a body already in memory and small (at most [`INLINE_BODY_BYTES`]):
    /// decoded on the calling task, which costs less than handing a few hundred bytes to a
    /// blocking thread and back, and is too short to hold up the executor.
    pub async fn ingest_small(
        &self,
        dataset: &str,
        format: BodyFormat,
        read: &ReadOptions,
        body: &[u8],
        options: WriteOptions,
    ) -> Result<IngestSummary, AppError> {
        let (schema, reach) = self.reach_to_write(dataset, options)?;
        let mut valid = Vec::new();
        let mut reader = body;
        let decoded = decode_checked(
            &*self.decoder,
            (format, read),
            Checker::new(&decoded_as(&schema, options), &reach, options.on_error),
            &mut reader,
            &AtomicU64::new(0),
            |batch| {
                valid.push(batch);
                Ok(())
            },
        );
        let mut write = Staging::default();
        for batch in valid {
            if !write.stage(self, &schema, batch).await {
                break;
            }
        }
        counted(&schema, format, write.finish(decoded, options).await)
    }
}

impl App {
    /// The dataset and the records a write may store in it.
    fn reach_to_write(
        &self,
        dataset: &str,
        options: WriteOptions,
    ) -> Result<(Arc<DatasetSchema>, Reach), AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Write)?;
        check_conflict_mode(&schema, &reach, options.on_conflict)?;
        Ok((schema, reach))
    }
}

/// Counts what a write did, by dataset and format, for `/metrics`.
fn counted(
    schema: &DatasetSchema,
    format: BodyFormat,
    summary: Result<IngestSummary, AppError>,
) -> Result<IngestSummary, AppError> {
    if let Ok(done) = &summary {
        let outcome = &done.outcome;
        for (what, rows) in [
            ("inserted", outcome.inserted),
            ("updated", outcome.updated),
            ("skipped", outcome.skipped),
            ("rejected", done.rejected),
        ] {
            if rows > 0 {
                metrics::counter!("dataforge_rows_written_total", "dataset" => schema.name.clone(), "format" => format.name(), "outcome" => what)
                    .increment(rows);
            }
        }
    } else if let Err(AppError::Invalid { .. } | AppError::Conflict { .. }) = &summary {
        // a refused write stores nothing; its records count as rejected requests, not rows
        metrics::counter!("dataforge_writes_refused_total", "dataset" => schema.name.clone(), "format" => format.name())
            .increment(1);
    }
    summary
}

/// The schema a body is decoded and validated with: the dataset's own, or for a merge its
/// partial form (see [`DatasetSchema::for_merge`]). The writer always gets the dataset's own.
fn decoded_as(schema: &Arc<DatasetSchema>, options: WriteOptions) -> Arc<DatasetSchema> {
    match options.on_conflict {
        ConflictMode::Merge => Arc::new(schema.for_merge()),
        _ => Arc::clone(schema),
    }
}

/// Bodies this small may be read whole and decoded with [`App::ingest_small`].
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// What the decoding of a body found: how it ended, and the violations (or the request's failure).
type Decoded = (Result<u64, BodyError>, Result<Violations, AppError>);

/// Decodes a body and validates each batch, handing the records to write to `deliver`.
fn decode_checked(
    decoder: &dyn BatchDecoder,
    (format, read): (BodyFormat, &ReadOptions),
    mut checker: Checker<'_>,
    body: &mut dyn Read,
    seen: &AtomicU64,
    mut deliver: impl FnMut(RecordBatch) -> Result<(), Halt>,
) -> Decoded {
    let schema = checker.schema;
    let read = decoder.decode(format, read, schema, body, BATCH_ROWS, &mut |decoded| {
        seen.fetch_add(decoded.batch.num_rows() as u64, Ordering::Relaxed);
        match checker.check(decoded)? {
            Some(batch) => deliver(batch),
            None => Ok(()),
        }
    });
    (read, checker.finish())
}

/// What a decoded body comes to: the violations of its rejected records (`on_error=skip`), or why
/// the request is refused.
fn verdict(decoded: Decoded) -> Result<Violations, AppError> {
    let (read, verdict) = decoded;
    match read {
        Ok(_) | Err(BodyError::Halted) => verdict,
        Err(BodyError::Batch(message)) => Err(AppError::Internal(message)),
        Err(BodyError::Columns(violations)) => {
            let total = violations.len() as u64;
            Err(AppError::Invalid { violations, total })
        }
        Err(other) => Err(AppError::MalformedBody(other.to_string())),
    }
}

impl App {
    /// One JSON record, decoded and validated as a write would be (defaults filled in), without
    /// writing it.
    pub(crate) fn decode_record(
        &self,
        schema: &DatasetSchema,
        body: &[u8],
    ) -> Result<RecordBatch, AppError> {
        let mut batches = Vec::new();
        let mut reader = body;
        let decoded = decode_checked(
            &*self.decoder,
            (BodyFormat::JSON, &ReadOptions::default()),
            Checker::new(schema, &Reach::All, ErrorMode::Reject),
            &mut reader,
            &AtomicU64::new(0),
            |batch| {
                batches.push(batch);
                Ok(())
            },
        );
        verdict(decoded)?;
        match batches.as_slice() {
            [record] if record.num_rows() == 1 => Ok(record.clone()),
            _ => Err(AppError::MalformedBody("the body is not one record".into())),
        }
    }
}

/// A write being staged batch by batch; begun with its first batch.
#[derive(Default)]
struct Staging {
    write: Option<Box<dyn StagedWrite>>,
    failure: Option<AppError>,
}

impl Staging {
    /// Stages a batch; false once staging failed (the rest of the body is not needed).
    async fn stage(&mut self, app: &App, schema: &Arc<DatasetSchema>, batch: RecordBatch) -> bool {
        let staged = match self.write.as_mut() {
            Some(write) => write.stage(batch).await,
            None => match app.writer.begin(Arc::clone(schema)).await {
                Ok(mut begun) => {
                    let staged = begun.stage(batch).await;
                    self.write = Some(begun);
                    staged
                }
                Err(e) => Err(e),
            },
        };
        match staged {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e.into());
                false
            }
        }
    }

    /// Commits the staged rows if the body was read whole and valid (or `on_error=skip`).
    async fn finish(
        self,
        decoded: Decoded,
        options: WriteOptions,
    ) -> Result<IngestSummary, AppError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        let violations = verdict(decoded)?;
        let outcome = match self.write {
            Some(write) => write.commit(options.on_conflict).await?,
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

/// Validates decoded batches as they come and says which records to write.
struct Checker<'s> {
    schema: &'s DatasetSchema,
    /// The records the credential may write.
    reach: &'s Reach,
    on_error: ErrorMode,
    violations: Violations,
    failure: Option<AppError>,
}

impl<'s> Checker<'s> {
    fn new(schema: &'s DatasetSchema, reach: &'s Reach, on_error: ErrorMode) -> Self {
        Checker {
            schema,
            reach,
            on_error,
            violations: Violations::default(),
            failure: None,
        }
    }

    /// The batch's records to write: all when valid, the valid ones with `on_error=skip`, none once
    /// the request is known to be rejected (reading goes on, to count every error).
    fn check(&mut self, decoded: DecodedBatch) -> Result<Option<RecordBatch>, Halt> {
        let DecodedBatch {
            batch,
            first_row,
            mut violations,
            rejected,
        } = decoded;
        validate_batch(self.schema, &batch, first_row, &rejected, &mut violations);
        if let Err(outside) = check_batch(self.schema, self.reach, &batch, first_row) {
            self.failure = Some(outside);
            return Err(Halt);
        }
        let clean = violations.is_empty();
        let rejecting =
            self.on_error == ErrorMode::Reject && !(clean && self.violations.is_empty());
        let keep = if rejecting {
            None
        } else if clean {
            Some(batch)
        } else {
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|i| Some(!violations.has_row(first_row + i as u64)))
                .collect();
            match filter_record_batch(&batch, &keep) {
                Ok(valid) => Some(valid).filter(|b| b.num_rows() > 0),
                Err(e) => {
                    self.failure = Some(AppError::Internal(e.to_string()));
                    return Err(Halt);
                }
            }
        };
        self.violations.merge(violations);
        Ok(keep)
    }

    /// Every violation found, or the request's failure.
    fn finish(self) -> Result<Violations, AppError> {
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
        Ok(self.violations)
    }
}
