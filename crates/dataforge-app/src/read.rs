//! The read queries: one record by key, a page of records or groups (JSON), a streamed export of
//! every matching row or group, a count.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::access::{Permission, Reach};
use dataforge_domain::ports::{BatchStream, RowCount, StoreError};
use dataforge_domain::query::{
    Cursor, OutputColumn, ReadPlan, parse_aggregate_params, parse_count_params, parse_key,
    parse_list_params, parse_query_body,
};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;

use crate::access::{check_batch, narrow};
use crate::{App, AppError};

/// Rows to show: batches whose columns are `columns`, in order.
#[derive(Debug, Clone)]
pub struct Rows {
    pub columns: Arc<[OutputColumn]>,
    pub batches: Vec<RecordBatch>,
}

/// One page of an answer.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Rows,
    /// The token for the next page of records, if there are more rows.
    pub next_cursor: Option<String>,
    /// Whether rows or groups past this page exist.
    pub more: bool,
    /// Whether the answer is groups of an aggregate (which have no cursor).
    pub aggregate: bool,
}

/// A whole answer, streamed: batches with `columns`, pulled on a blocking thread.
pub struct Export {
    pub columns: Arc<[OutputColumn]>,
    pub batches: BatchStream,
}

/// What a read request says, before it is checked against the dataset's schema.
#[derive(Debug, Clone, Copy)]
pub enum ReadRequest<'a> {
    /// `GET .../records` parameters: filters, `select`, `order`, `limit`, `cursor`.
    Records(&'a [(String, String)]),
    /// `GET .../aggregate` parameters: filters, `group_by`, `metrics`, `bucket`, `order`, `limit`.
    Aggregate(&'a [(String, String)]),
    /// A `POST .../query` body.
    Body(&'a serde_json::Value),
}

impl App {
    /// The record with the key given as path segments, in key order.
    /// A record outside the credential's row rule is not found, as if it were not stored.
    pub async fn get_record(&self, dataset: &str, segments: &[&str]) -> Result<Rows, AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Read)?;
        let rows = self.stored_record(&schema, segments).await?;
        match check_batch(&schema, &reach, &rows.batches[0], 1) {
            Ok(()) => Ok(rows),
            Err(_) => Err(not_found(&schema, segments)),
        }
    }

    /// The record with the key given as path segments, whoever asks (the answer of a write).
    pub(crate) async fn stored_record(
        &self,
        schema: &Arc<DatasetSchema>,
        segments: &[&str],
    ) -> Result<Rows, AppError> {
        let key = parse_key(schema, segments)?;
        match self.reader.get(Arc::clone(schema), key).await? {
            Some(batch) if batch.num_rows() > 0 => Ok(Rows {
                columns: all_fields(schema),
                batches: vec![batch],
            }),
            _ => Err(not_found(schema, segments)),
        }
    }

    /// The request's plan, narrowed to the rows the credential may read.
    fn plan(
        &self,
        schema: &DatasetSchema,
        reach: &Reach,
        request: ReadRequest<'_>,
        paged: bool,
    ) -> Result<ReadPlan, AppError> {
        let mut plan = match request {
            ReadRequest::Records(params) => {
                ReadPlan::Records(parse_list_params(schema, params, self.limits, paged)?)
            }
            ReadRequest::Aggregate(params) => {
                ReadPlan::Aggregate(parse_aggregate_params(schema, params, self.limits, paged)?)
            }
            ReadRequest::Body(body) => parse_query_body(schema, body, self.limits, paged)?,
        };
        match &mut plan {
            ReadPlan::Records(query) => narrow(&mut query.filter, reach),
            ReadPlan::Aggregate(aggregation) => narrow(&mut aggregation.filter, reach),
        }
        Ok(plan)
    }

    /// One page: at most the request's limit (bounded by `max_limit`) of rows or groups.
    pub async fn read_page(
        &self,
        dataset: &str,
        request: ReadRequest<'_>,
    ) -> Result<Page, AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Read)?;
        let mut plan = self.plan(&schema, &reach, request, true)?;
        let limit = plan.limit().unwrap_or(self.limits.max_limit);
        plan.set_limit(Some(limit + 1)); // one more row tells whether another page exists
        let fetched = plan.columns(&schema);
        let shown = shown_columns(&plan);
        let stream = self.reader.scan(Arc::clone(&schema), plan.clone()).await?;
        let batches = tokio::task::spawn_blocking(move || {
            let mut kept = Vec::new();
            let mut rows = 0;
            for batch in stream {
                let batch = batch?;
                rows += batch.num_rows();
                kept.push(batch);
                if rows > limit {
                    break;
                }
            }
            Ok::<_, StoreError>(kept)
        })
        .await
        .map_err(|e| AppError::Internal(format!("read task failed: {e}")))??;

        let more = batches.iter().map(RecordBatch::num_rows).sum::<usize>() > limit;
        let mut kept = Vec::new();
        let mut rows = 0;
        for batch in batches {
            let take = batch.num_rows().min(limit - rows);
            if take == 0 {
                break;
            }
            kept.push(batch.slice(0, take));
            rows += take;
        }
        // the last row shown is where the next page starts
        let next_cursor = match (&plan, kept.last()) {
            (ReadPlan::Records(query), Some(last)) if more => {
                let row = last.num_rows() - 1;
                let fields = query.fetched_fields();
                let values: Vec<Value> = query
                    .order
                    .iter()
                    .map(|key| {
                        let col = fields.iter().position(|&f| f == key.field).unwrap_or(0);
                        Value::from_array(
                            schema.fields[key.field].field_type,
                            last.column(col),
                            row,
                        )
                    })
                    .collect();
                Some(Cursor::encode(&schema, &query.order, &values))
            }
            _ => None,
        };
        let batches = kept
            .into_iter()
            .map(|b| project(&b, shown))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            rows: Rows {
                columns: fetched[..shown].into(),
                batches,
            },
            next_cursor,
            more,
            aggregate: matches!(plan, ReadPlan::Aggregate(_)),
        })
    }

    /// Every matching row or group, streamed batch by batch, with no page limit unless the
    /// request sets one.
    pub async fn read_export(
        &self,
        dataset: &str,
        request: ReadRequest<'_>,
    ) -> Result<Export, AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Read)?;
        let plan = self.plan(&schema, &reach, request, false)?;
        let fetched = plan.columns(&schema);
        let shown = shown_columns(&plan);
        let stream = self.reader.scan(Arc::clone(&schema), plan).await?;
        let batches = if shown == fetched.len() {
            stream
        } else {
            BatchStream::new(stream.map(move |batch| {
                batch.and_then(|b| {
                    project(&b, shown).map_err(|e| StoreError::Internal(e.to_string()))
                })
            }))
        };
        Ok(Export {
            columns: fetched[..shown].into(),
            batches,
        })
    }

    /// How many records match the filters (`exact=false`: an estimate may do).
    pub async fn count_records(
        &self,
        dataset: &str,
        params: &[(String, String)],
    ) -> Result<RowCount, AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Read)?;
        let (mut filter, exact) = parse_count_params(&schema, params)?;
        narrow(&mut filter, &reach);
        Ok(self.reader.count(schema, filter, exact).await?)
    }
}

/// Every field of the dataset, as answer columns.
pub(crate) fn all_fields(schema: &DatasetSchema) -> Arc<[OutputColumn]> {
    schema
        .fields
        .iter()
        .map(|f| OutputColumn {
            name: f.name.clone(),
            field_type: f.field_type,
        })
        .collect()
}

/// How many of the fetched columns are shown (the rest only serve to make cursors).
fn shown_columns(plan: &ReadPlan) -> usize {
    match plan {
        ReadPlan::Records(query) => query.select.len(),
        ReadPlan::Aggregate(aggregation) => aggregation.group_by.len() + aggregation.metrics.len(),
    }
}

fn project(batch: &RecordBatch, shown: usize) -> Result<RecordBatch, AppError> {
    if batch.num_columns() == shown {
        return Ok(batch.clone());
    }
    let columns: Vec<usize> = (0..shown).collect();
    batch
        .project(&columns)
        .map_err(|e| AppError::Internal(e.to_string()))
}

pub(crate) fn not_found(schema: &DatasetSchema, segments: &[&str]) -> AppError {
    AppError::RecordNotFound {
        dataset: schema.name.clone(),
        key: segments.join("/"),
    }
}
