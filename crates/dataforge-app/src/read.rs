//! The read queries: one record by key, a page of records, a count.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::query::{Cursor, parse_count_params, parse_key, parse_list_params};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;

use crate::{App, AppError};

/// Rows to show, as batches whose columns are `fields` (positions in the schema), in order.
#[derive(Debug, Clone)]
pub struct Rows {
    pub schema: Arc<DatasetSchema>,
    pub fields: Vec<usize>,
    pub batches: Vec<RecordBatch>,
}

/// One page of a listing and the token for the next, if there are more rows.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Rows,
    pub next_cursor: Option<String>,
}

impl App {
    /// The record with the key given as path segments, in key order.
    pub async fn get_record(&self, dataset: &str, segments: &[&str]) -> Result<Rows, AppError> {
        let schema = self.dataset(dataset)?;
        let key = parse_key(&schema, segments)?;
        let shown_key = segments.join("/");
        match self.reader.get(Arc::clone(&schema), key).await? {
            Some(batch) => Ok(Rows {
                fields: (0..schema.fields.len()).collect(),
                schema,
                batches: vec![batch],
            }),
            None => Err(AppError::RecordNotFound {
                dataset: schema.name.clone(),
                key: shown_key,
            }),
        }
    }

    /// A page of records matching the listing parameters (`field=op.value`, `select`, `order`,
    /// `limit`, `cursor`).
    pub async fn list_records(
        &self,
        dataset: &str,
        params: &[(String, String)],
    ) -> Result<Page, AppError> {
        let schema = self.dataset(dataset)?;
        let mut query = parse_list_params(&schema, params, self.limits)?;
        let limit = query.limit;
        let select = query.select.clone();
        let order = query.order.clone();
        let order_columns: Vec<usize> = {
            let fetched = query.fetched_fields();
            order
                .iter()
                .map(|k| {
                    fetched
                        .iter()
                        .position(|&f| f == k.field)
                        .unwrap_or_default()
                })
                .collect()
        };
        query.limit = limit + 1; // one more row tells whether another page exists
        let batches = self.reader.query(Arc::clone(&schema), query).await?;

        let has_more = batches.iter().map(RecordBatch::num_rows).sum::<usize>() > limit;
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
        let next_cursor = match kept.last() {
            Some(last) if has_more => {
                let row = last.num_rows() - 1;
                let values: Vec<Value> = order
                    .iter()
                    .zip(&order_columns)
                    .map(|(key, &col)| {
                        Value::from_array(
                            schema.fields[key.field].field_type,
                            last.column(col),
                            row,
                        )
                    })
                    .collect();
                Some(Cursor::encode(&schema, &order, &values))
            }
            _ => None,
        };
        let shown: Vec<usize> = (0..select.len()).collect();
        let batches = kept
            .into_iter()
            .map(|b| {
                b.project(&shown)
                    .map_err(|e| AppError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            rows: Rows {
                schema,
                fields: select,
                batches,
            },
            next_cursor,
        })
    }

    /// How many records match the filters.
    pub async fn count_records(
        &self,
        dataset: &str,
        params: &[(String, String)],
    ) -> Result<u64, AppError> {
        let schema = self.dataset(dataset)?;
        let filters = parse_count_params(&schema, params)?;
        Ok(self.reader.count(schema, filters).await?)
    }
}
