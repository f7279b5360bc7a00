//! Updates and deletes by filter, and clustering: one statement each, in a transaction that is
//! rolled back when it touched more records than the request allows.

use dataforge_domain::change::{Change, Mutated, Mutation};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_sql::{Statement, column_list, quote};
use deadpool_postgres::Pool;

use crate::connection;
use crate::dialect::PostgresDialect;
use crate::errors::statement_error as failed;
use crate::read::{params, refs};
use crate::write::lock_dataset;

pub(crate) async fn mutate(
    pool: &Pool,
    schema: &DatasetSchema,
    mutation: &Mutation,
) -> Result<Mutated, StoreError> {
    let filter = dataforge_sql::where_clause(&PostgresDialect, schema, &mutation.filter);
    let mut client = connection(pool).await?;
    let tx = client.transaction().await.map_err(failed)?;
    // statement_timeout bounds reads; a change of millions of records may take longer
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .await
        .map_err(failed)?;
    lock_dataset(&tx, schema).await?;
    let changed = match &mutation.change {
        Change::Delete if schema.partition_by.is_some() => {
            delete_partitioned(&tx, schema, &filter).await?
        }
        Change::Delete => {
            let sql = format!("DELETE FROM {}{}", quote(&schema.name), filter.sql);
            let bound = params(&filter.params);
            tx.execute(&sql, &refs(&bound)).await.map_err(failed)?
        }
        Change::Update(values) => update(&tx, schema, filter, values).await?,
    };
    if let Some(max) = mutation.max_affected
        && changed > max
    {
        tx.rollback().await.map_err(failed)?;
        return Err(StoreError::TooMany {
            affected: changed,
            max,
        });
    }
    tx.commit().await.map_err(failed)?;
    Ok(Mutated::count(changed))
}

/// `UPDATE ... SET` the new values of the records the filter selects (never of a key field, so
/// never of the partition field).
async fn update(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &DatasetSchema,
    mut filter: Statement,
    values: &[(usize, Value)],
) -> Result<u64, StoreError> {
    let first = filter.params.len();
    let sets: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (field, _))| {
            format!(
                "{} = ${}",
                quote(&schema.fields[*field].name),
                first + i + 1
            )
        })
        .collect();
    filter
        .params
        .extend(values.iter().map(|(_, value)| value.clone()));
    let sql = format!(
        "UPDATE {} SET {}{}",
        quote(&schema.name),
        sets.join(", "),
        filter.sql
    );
    let bound = params(&filter.params);
    tx.execute(&sql, &refs(&bound)).await.map_err(failed)
}

/// A delete from a partitioned table: a partition whose every record the filter selects is
/// dropped whole (a retention delete of old months costs no row deletes), the others lose the
/// selected records.
async fn delete_partitioned(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &DatasetSchema,
    filter: &Statement,
) -> Result<u64, StoreError> {
    let bound = params(&filter.params);
    let matched = tx
        .query(
            &format!(
                "SELECT tableoid::regclass::TEXT, count(*) FROM {}{} GROUP BY 1",
                quote(&schema.name),
                filter.sql
            ),
            &refs(&bound),
        )
        .await
        .map_err(failed)?;
    let mut changed = 0;
    for row in matched {
        let (partition, selected): (String, i64) = (row.get(0), row.get(1));
        let all: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {partition}"), &[])
            .await
            .map_err(failed)?
            .get(0);
        if selected == all {
            tx.batch_execute(&format!("DROP TABLE {partition}"))
                .await
                .map_err(failed)?;
            tracing::info!(dataset = %schema.name, %partition, records = all, "dropped a partition every record of which was deleted");
        } else {
            tx.execute(
                &format!("DELETE FROM {partition}{}", filter.sql),
                &refs(&bound),
            )
            .await
            .map_err(failed)?;
        }
        changed += selected as u64;
    }
    Ok(changed)
}

/// Rewrites the table in the order of its `cluster_by` fields (its key when it has none).
pub(crate) async fn cluster(pool: &Pool, schema: &DatasetSchema) -> Result<u64, StoreError> {
    let order = if schema.cluster_by.is_empty() {
        &schema.primary_key
    } else {
        &schema.cluster_by
    };
    let names = column_list(order.iter().map(|&i| schema.fields[i].name.as_str()));
    let table = quote(&schema.name);
    let index = quote(&format!("{}__cluster", schema.name));
    let mut client = connection(pool).await?;
    let tx = client.transaction().await.map_err(failed)?;
    // statement_timeout bounds reads; rewriting a large table takes longer
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; CREATE INDEX IF NOT EXISTS {index} ON {table} ({names}); \
         CLUSTER {table} USING {index}"
    ))
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    client
        .batch_execute(&format!("ANALYZE {table}"))
        .await
        .map_err(failed)?;
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map_err(failed)?;
    Ok(row.get::<_, i64>(0) as u64)
}
