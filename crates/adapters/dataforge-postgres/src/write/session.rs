//! Where a write's records wait for its commit, and how the commit's statements reach them. A
//! small write keeps its records here and sends them with each statement as a `VALUES` list named
//! like the staged table (one round trip, no temporary table, a statement prepared once per
//! shape); a larger one copies them into a temporary table of its transaction as they come.

use arrow_array::RecordBatch;
use bytes::BytesMut;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_sql::{column_list, quote};
use deadpool_postgres::Object;
use futures_util::{SinkExt, pin_mut};
use postgres_types::ToSql;
use tokio_postgres::Row;

use super::statements::{ROW, STAGED};
use crate::copy;
use crate::errors::statement_error as failed;
use crate::read::prepared;
use crate::values::{Param, column_type};

/// Records a write may hold before it copies them to a temporary table.
const HELD_ROWS: usize = 256;
/// Parameters a held write may send (PostgreSQL takes at most 65,535).
const HELD_PARAMS: usize = 16_384;

/// Whether a write of `rows` records of `schema` is small enough to hold.
pub(super) fn holds(schema: &DatasetSchema, rows: usize) -> bool {
    rows <= HELD_ROWS && rows * (schema.fields.len() + 1) <= HELD_PARAMS
}

/// A connection running a write's statements against its staged records.
pub(super) struct Session<'a> {
    pub client: &'a Object,
    /// For held records: the `WITH` item naming them, and its parameters.
    held: Option<(String, Vec<Value>)>,
    /// Whether a transaction is open on the client (else each statement is its own).
    transaction: bool,
}

impl<'a> Session<'a> {
    /// Statements over records copied to the temporary table, in the open transaction.
    pub(super) fn copied(client: &'a Object) -> Self {
        Session {
            client,
            held: None,
            transaction: true,
        }
    }

    /// Statements that carry the held records themselves.
    pub(super) fn held(
        client: &'a Object,
        schema: &DatasetSchema,
        batches: &[RecordBatch],
    ) -> Self {
        let mut values = Vec::new();
        let mut rows = Vec::new();
        let types: Vec<&str> = schema
            .fields
            .iter()
            .map(|f| column_type(f.field_type))
            .collect();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let mut cells = Vec::with_capacity(types.len() + 1);
                for ((field, column), ty) in schema.fields.iter().zip(batch.columns()).zip(&types) {
                    values.push(Value::from_array(field.field_type, column, row));
                    cells.push(format!("CAST(${} AS {ty})", values.len()));
                }
                values.push(Value::Integer(rows.len() as i64));
                cells.push(format!("CAST(${} AS BIGINT)", values.len()));
                rows.push(format!("({})", cells.join(", ")));
            }
        }
        let names = column_list(schema.fields.iter().map(|f| f.name.as_str()));
        let staged = format!(
            "{STAGED} AS (SELECT * FROM (VALUES {}) AS v({names}, {ROW}))",
            rows.join(", ")
        );
        Session {
            client,
            held: Some((staged, values)),
            transaction: false,
        }
    }

    /// The session, its statements run in the transaction open on its client.
    pub(super) fn in_open_transaction(self) -> Self {
        Session {
            transaction: true,
            ..self
        }
    }

    /// Whether the statements run in an open transaction (the copied records', a merge's, a
    /// group's), which a failed statement aborts.
    pub(super) fn in_transaction(&self) -> bool {
        self.transaction
    }

    /// `statement` with the held records in front (as the first `WITH` item).
    fn text(&self, statement: &str) -> String {
        match &self.held {
            None => statement.to_owned(),
            Some((staged, _)) => match statement.strip_prefix("WITH ") {
                Some(rest) => format!("WITH {staged}, {rest}"),
                None => format!("WITH {staged} {statement}"),
            },
        }
    }

    pub(super) fn params(&self) -> Vec<Param<'_>> {
        self.held
            .as_ref()
            .map(|(_, values)| values.iter().map(Param).collect())
            .unwrap_or_default()
    }

    /// `statement` prepared on the client (once per connection) with the held records in front:
    /// for a group, which sends it with the others in one go.
    pub(super) async fn prepare(
        &self,
        statement: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        prepared(self.client, &self.text(statement)).await
    }

    pub(super) async fn execute(&self, statement: &str) -> Result<u64, tokio_postgres::Error> {
        let params = self.params();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        match self.held {
            Some(_) => {
                let prepared = prepared(self.client, &self.text(statement)).await?;
                self.client.execute(&prepared, &refs).await
            }
            None => self.client.execute(statement, &refs).await,
        }
    }

    pub(super) async fn query(&self, statement: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
        let params = self.params();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        match self.held {
            Some(_) => {
                let prepared = prepared(self.client, &self.text(statement)).await?;
                self.client.query(&prepared, &refs).await
            }
            None => self.client.query(statement, &refs).await,
        }
    }
}

/// Opens a transaction on `client` with the temporary staged table of `schema`.
pub(super) async fn create_staged(
    client: &Object,
    schema: &DatasetSchema,
) -> Result<(), StoreError> {
    let columns: Vec<String> = schema
        .fields
        .iter()
        .map(|f| format!("{} {}", quote(&f.name), column_type(f.field_type)))
        .collect();
    client
        .batch_execute(&format!(
            // statement_timeout bounds reads; a bulk write of millions of records may take longer
            "BEGIN; SET LOCAL statement_timeout = 0; \
             CREATE TEMPORARY TABLE {STAGED} ({}, {ROW} BIGINT NOT NULL) ON COMMIT DROP",
            columns.join(", ")
        ))
        .await
        .map_err(failed)
}

/// Copies a batch into the staged table, its records numbered from `first_row`, in chunks of
/// about a MiB.
pub(super) async fn copy_batch(
    client: &Object,
    schema: &DatasetSchema,
    batch: &RecordBatch,
    first_row: i64,
) -> Result<(), StoreError> {
    const CHUNK_BYTES: usize = 1 << 20;
    let names = column_list(schema.fields.iter().map(|f| f.name.as_str()));
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {STAGED} ({names}, {ROW}) FROM STDIN BINARY"))
        .await
        .map_err(failed)?;
    pin_mut!(sink);
    let mut out = BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024);
    copy::header(&mut out);
    let mut row = 0;
    while row < batch.num_rows() {
        let end = (row + 1024).min(batch.num_rows());
        copy::rows(schema, batch, row..end, first_row + row as i64, &mut out);
        row = end;
        if out.len() >= CHUNK_BYTES {
            sink.send(out.split().freeze()).await.map_err(failed)?;
        }
    }
    copy::trailer(&mut out);
    sink.send(out.freeze()).await.map_err(failed)?;
    sink.finish().await.map_err(failed)?;
    Ok(())
}
