//! Tables partitioned by time (`partition_by`): one partition per calendar month or year of a
//! date or timestamp field of the key, created as records for it arrive (under the dataset's
//! write lock, so two nodes never race to make one; an update cannot move a record, the field
//! being part of the key), and dropped whole when a delete takes every record it holds
//! (retention).

use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::{DatasetSchema, PartitionInterval, Partitioning};
use dataforge_domain::value::format_date;
use dataforge_sql::quote;
use tokio_postgres::GenericClient;

use crate::errors::statement_error as failed;

/// ` PARTITION BY RANGE (field)` for a partitioned dataset's `CREATE TABLE`.
pub(crate) fn clause(schema: &DatasetSchema) -> String {
    schema
        .partition_by
        .map(|p| {
            format!(
                " PARTITION BY RANGE ({})",
                quote(&schema.fields[p.field].name)
            )
        })
        .unwrap_or_default()
}

/// The first day of the partition holding `days` (days since 1970-01-01), as (year, month).
fn start_of(interval: PartitionInterval, days: i32) -> (i32, u32) {
    let date = format_date(days);
    let year: i32 = date[..date.len() - 6].parse().unwrap_or(1970);
    let month: u32 = date[date.len() - 5..date.len() - 3].parse().unwrap_or(1);
    match interval {
        PartitionInterval::Month => (year, month),
        PartitionInterval::Year => (year, 1),
    }
}

/// The name of the partition of `table` that starts at (year, month).
fn name(table: &str, interval: PartitionInterval, (year, month): (i32, u32)) -> String {
    match interval {
        PartitionInterval::Month => format!("{table}__p{year:04}_{month:02}"),
        PartitionInterval::Year => format!("{table}__p{year:04}"),
    }
}

/// Makes the partition of `table` that starts at (year, month), unless it exists.
async fn create(
    client: &impl GenericClient,
    table: &str,
    interval: PartitionInterval,
    (year, month): (i32, u32),
) -> Result<(), StoreError> {
    let (end_year, end_month) = match interval {
        PartitionInterval::Month if month == 12 => (year + 1, 1),
        PartitionInterval::Month => (year, month + 1),
        PartitionInterval::Year => (year + 1, 1),
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ('{year:04}-{month:02}-01') TO ('{end_year:04}-{end_month:02}-01')",
            quote(&name(table, interval, (year, month))),
            quote(table)
        ))
        .await
        .map_err(failed)
}

/// The first days (since 1970-01-01) of the partitions the values of the partition field in
/// `source` (a table, or a subquery with that column) fall in; `None` for a dataset without
/// partitions.
pub(crate) fn starts_sql(schema: &DatasetSchema, source: &str) -> Option<String> {
    let Partitioning { field, interval } = schema.partition_by?;
    let column = quote(&schema.fields[field].name);
    Some(format!(
        "SELECT DISTINCT CAST(CAST(date_trunc('{}', {column}) AS DATE) - DATE '1970-01-01' AS INTEGER) \
         FROM {source} WHERE {column} IS NOT NULL",
        interval.name()
    ))
}

/// The partitions of `schema`'s table that days `needed` fall in and that do not exist yet.
pub(crate) async fn missing(
    client: &impl GenericClient,
    schema: &DatasetSchema,
    needed: &[i32],
) -> Result<Vec<(i32, u32)>, StoreError> {
    let Some(Partitioning { interval, .. }) = schema.partition_by else {
        return Ok(Vec::new());
    };
    let mut starts: Vec<(i32, u32)> = needed.iter().map(|&d| start_of(interval, d)).collect();
    starts.sort_unstable();
    starts.dedup();
    let existing = of(client, &schema.name).await?;
    Ok(starts
        .into_iter()
        .filter(|&start| !existing.contains(&name(&schema.name, interval, start)))
        .collect())
}

/// Makes the partitions of `schema`'s table that start at `starts`.
pub(crate) async fn create_all(
    client: &impl GenericClient,
    schema: &DatasetSchema,
    starts: &[(i32, u32)],
) -> Result<(), StoreError> {
    if let Some(Partitioning { interval, .. }) = schema.partition_by {
        for &start in starts {
            create(client, &schema.name, interval, start).await?;
        }
    }
    Ok(())
}

/// Makes the partitions of `table` (a migration's working table, made as `schema` declares) that
/// the records of `source` need.
pub(crate) async fn make_for(
    client: &impl GenericClient,
    schema: &DatasetSchema,
    table: &str,
    source: &str,
) -> Result<(), StoreError> {
    let (Some(sql), Some(Partitioning { interval, .. })) =
        (starts_sql(schema, source), schema.partition_by)
    else {
        return Ok(());
    };
    let rows = client.query(&sql, &[]).await.map_err(failed)?;
    for row in rows {
        create(client, table, interval, start_of(interval, row.get(0))).await?;
    }
    Ok(())
}

/// Partitions of a dataset's table, by name.
pub(crate) async fn of(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) ORDER BY 1",
            &[&quote(table)],
        )
        .await
        .map_err(failed)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_falls_in_its_month_or_year() {
        // 2020-02-29 is day 18321 since 1970-01-01
        assert_eq!(start_of(PartitionInterval::Month, 18_321), (2020, 2));
        assert_eq!(start_of(PartitionInterval::Year, 18_321), (2020, 1));
        assert_eq!(start_of(PartitionInterval::Month, -1), (1969, 12));
    }
}
