//! PostgreSQL's spelling of what engines disagree on in the SQL of reads.

use dataforge_domain::query::BucketUnit;
use dataforge_domain::value::{FieldType, format_timestamp};
use dataforge_sql::Dialect;

use crate::values::column_type;

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

    /// Its UTC text, which a `TIMESTAMP` reads (ignoring the `Z`) to the microsecond.
    fn timestamp_literal(&self, micros: i64) -> String {
        format!("TIMESTAMP '{}'", format_timestamp(micros))
    }

    /// A plain `CAST` (PostgreSQL has no `TRY_CAST`): a stored value that does not convert fails
    /// the migration with PostgreSQL's message, and nothing is changed.
    fn converted(&self, column: &str, ty: &str) -> String {
        format!("CAST({column} AS {ty})")
    }
}

#[cfg(test)]
mod tests {
    use dataforge_domain::value::Value;
    use dataforge_sql::literal;

    use super::*;

    #[test]
    fn literals_are_the_shared_ones_with_postgresql_types_and_timestamps() {
        let spelled = |value: Value| literal(&PostgresDialect, &value);
        assert_eq!(spelled(Value::String(r"it's C:\x".into())), r"'it''s C:\x'");
        assert_eq!(
            spelled(Value::Float(1.5)),
            "CAST('1.5' AS DOUBLE PRECISION)"
        );
        assert_eq!(spelled(Value::Date(18_262)), "CAST('2020-01-01' AS DATE)");
        assert_eq!(
            spelled(Value::Timestamp(0)),
            "TIMESTAMP '1970-01-01T00:00:00Z'"
        );
        assert_eq!(
            spelled(Value::Timestamp(-1)),
            "TIMESTAMP '1969-12-31T23:59:59.999999Z'"
        );
    }
}
