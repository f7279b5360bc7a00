//! PostgreSQL's spelling of what engines disagree on in the SQL of reads.

use dataforge_domain::query::BucketUnit;
use dataforge_domain::value::{FieldType, Value};
use dataforge_sql::Dialect;

use crate::values::{column_type, literal};

pub(crate) struct PostgresDialect;

impl Dialect for PostgresDialect {
    fn placeholder(&self, number: usize) -> String {
        format!("${number}")
    }

    fn column_type(&self, ty: FieldType) -> &'static str {
        column_type(ty)
    }

    /// `date_bin` for clock units; months and years, which `date_bin` cannot stride, counted from
    /// 2000-01-01 by arithmetic on the month number.
    fn bucket(&self, unit: BucketUnit, count: u32, column: &str) -> String {
        let months_since_2000 = format!(
            "((EXTRACT(YEAR FROM {column}) - 2000) * 12 + EXTRACT(MONTH FROM {column}) - 1)"
        );
        let stride = |months: String, width: u32| {
            format!(
                "(DATE '2000-01-01' + make_interval(months => CAST(floor({months} / {width}) * {width} AS INTEGER)))"
            )
        };
        match unit {
            BucketUnit::Month | BucketUnit::Quarter => stride(months_since_2000, count),
            BucketUnit::Year => stride(months_since_2000, count * 12),
            _ => format!(
                "date_bin(INTERVAL '{count} {}', CAST({column} AS TIMESTAMP), TIMESTAMP '2000-01-03')",
                unit.name()
            ),
        }
    }

    fn quantile(&self, expression: &str, fraction: f64) -> String {
        format!("percentile_cont({fraction:?}) WITHIN GROUP (ORDER BY {expression})")
    }

    fn literal(&self, value: &Value) -> String {
        literal(value)
    }

    /// A plain `CAST` (PostgreSQL has no `TRY_CAST`): a stored value that does not convert fails
    /// the migration with PostgreSQL's message, and nothing is changed.
    fn converted(&self, column: &str, ty: &str) -> String {
        format!("CAST({column} AS {ty})")
    }
}
