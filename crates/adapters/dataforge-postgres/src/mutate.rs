//! Updates and deletes by filter, and clustering: one statement each, in a transaction that is
//! rolled back when it touched more records than the request allows.

use dataforge_domain::change::{Change, Mutated, Mutation};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_sql::{column_list, quote};
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
    let mut statement = dataforge_sql::where_clause(&PostgresDialect, schema, &mutation.filter);
    let table = quote(&schema.name);
    let sql = match &mutation.change {
        Change::Delete => format!("DELETE FROM {table}{}", statement.sql),
        Change::Update(values) => {
            let first = statement.params.len();
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
            statement
                .params
                .extend(values.iter().map(|(_, value)| value.clone()));
            format!("UPDATE {table} SET {}{}", sets.join(", "), statement.sql)
        }
    };
    let mut client = connection(pool).await?;
    let tx = client.transaction().await.map_err(failed)?;
    lock_dataset(&tx, schema).await?;
    let bound = params(&statement.params);
    let changed = tx.execute(&sql, &refs(&bound)).await.map_err(failed)?;
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
    let client = connection(pool).await?;
    client
        .batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {table} ({names}); CLUSTER {table} USING {index}; ANALYZE {table}"
        ))
        .await
        .map_err(failed)?;
    let row = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map_err(failed)?;
    Ok(row.get::<_, i64>(0) as u64)
}
