//! SQL for reads, from the SQL every SQL store shares (`dataforge-sql`), in DuckDB's dialect and
//! with its values bound as DuckDB parameters.

use dataforge_domain::query::{BucketUnit, Predicate, ReadPlan};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value};
use dataforge_sql::Dialect;
use duckdb::types::Value as DuckValue;

use crate::sql::{bind, column_type, timestamp_literal};

/// DuckDB's spelling of what engines disagree on.
pub(crate) struct DuckDbDialect;

impl Dialect for DuckDbDialect {
    fn placeholder(&self, _number: usize) -> String {
        "?".to_owned()
    }

    fn column_type(&self, ty: FieldType) -> &'static str {
        column_type(ty)
    }

    /// `time_bucket`, whose origins are the ones [`Dialect::bucket`] names.
    fn bucket(&self, unit: BucketUnit, count: u32, column: &str) -> String {
        format!("time_bucket(INTERVAL '{count} {}', {column})", unit.name())
    }

    fn quantile(&self, expression: &str, fraction: f64) -> String {
        format!("quantile_cont({expression}, {fraction:?})")
    }

    fn timestamp_literal(&self, micros: i64) -> String {
        timestamp_literal(micros)
    }

    /// `TRY_CAST`: a value that does not convert becomes null.
    fn converted(&self, column: &str, ty: &str) -> String {
        format!("TRY_CAST({column} AS {ty})")
    }
}

/// A statement and the values for its `?` placeholders, in order.
#[derive(Debug, Default)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<DuckValue>,
}

impl From<dataforge_sql::Statement> for Statement {
    fn from(statement: dataforge_sql::Statement) -> Self {
        Statement {
            sql: statement.sql,
            params: statement.params.iter().map(bind).collect(),
        }
    }
}

/// The statement answering a read plan.
pub(crate) fn plan(schema: &DatasetSchema, plan: &ReadPlan) -> Statement {
    dataforge_sql::plan(&DuckDbDialect, schema, plan).into()
}

/// A count of matching rows; `sample_percent` counts a system sample of the table instead and
/// scales it up.
pub(crate) fn count(
    schema: &DatasetSchema,
    filter: &Predicate,
    sample_percent: Option<u32>,
) -> Statement {
    dataforge_sql::count(&DuckDbDialect, schema, filter, sample_percent).into()
}

/// ` WHERE …` for `filter` (empty when it holds for every row), and its parameters: the rows an
/// update or a delete changes.
pub(crate) fn where_clause(schema: &DatasetSchema, filter: &Predicate) -> Statement {
    dataforge_sql::where_clause(&DuckDbDialect, schema, filter).into()
}

/// The row with a given primary key.
pub(crate) fn by_key(schema: &DatasetSchema, key: &[Value]) -> Statement {
    dataforge_sql::by_key(&DuckDbDialect, schema, key).into()
}
