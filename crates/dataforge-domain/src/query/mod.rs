//! The query model: what a read asks for (filters, projection, order, page size, position), checked
//! against the schema when it is parsed so storage adapters only ever see valid, typed queries.

mod aggregate;
mod body;
mod bucket;
mod cursor;
mod holds;
mod metric;
mod operators;
mod params;

pub use aggregate::{Aggregation, GroupKey, Having, parse_aggregate_params};
pub use body::{FILTER_MAX_DEPTH, FILTER_MAX_NODES, parse_query_body};
pub(crate) use body::{body_parts, filter_part};
pub use bucket::{Bucket, BucketUnit, MAX_BUCKET_COUNT};
pub use cursor::Cursor;
pub use metric::{Metric, MetricFunction};
pub(crate) use operators::operator_names;
pub use operators::{Applies, OPERATORS, Operand, Operator, operator, operators_for};
pub(crate) use params::parse_filter;
pub use params::{QueryLimits, parse_count_params, parse_key, parse_list_params};

use crate::schema::DatasetSchema;
use crate::value::{FieldType, Value};

/// A comparison with one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// What one filter requires of its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Comparison, Value),
    In(Vec<Value>),
    /// SQL LIKE pattern (`%` and `_`), case-sensitive.
    Like(String),
    /// SQL LIKE pattern, case-insensitive.
    ILike(String),
    /// Both bounds included.
    Between(Value, Value),
    IsNull,
    IsNotNull,
}

/// A condition on one field, by its position in the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: usize,
    pub condition: Condition,
}

/// A tree of conditions. An empty `And` holds for every row.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Filter(Filter),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
}

impl Predicate {
    /// Every filter must hold (the meaning of several URL filters).
    pub fn all(filters: Vec<Filter>) -> Predicate {
        Predicate::And(filters.into_iter().map(Predicate::Filter).collect())
    }

    /// Whether the predicate holds for every row (no condition at all).
    pub fn is_always(&self) -> bool {
        matches!(self, Predicate::And(terms) if terms.iter().all(Predicate::is_always))
    }
}

/// The position of field `name`, or an error at `at` (a parameter or body path) listing the
/// dataset's fields.
pub(crate) fn field_at(schema: &DatasetSchema, at: &str, name: &str) -> Result<usize, QueryError> {
    schema.field_index(name).ok_or_else(|| {
        QueryError::new(
            at,
            format!(
                "unknown field `{name}`; {} has fields: {}",
                schema.name,
                schema.field_names()
            ),
        )
    })
}

/// The operator named `op` if it applies to a field of type `ty`, or an error at `at` saying why
/// not (listing the operators when `op` is none).
pub(crate) fn check_operator(
    at: &str,
    op: &str,
    name: &str,
    ty: FieldType,
) -> Result<&'static Operator, QueryError> {
    let operator = operator(op).ok_or_else(|| {
        QueryError::new(
            at,
            format!("unknown operator `{op}`; operators: {}", operator_names()),
        )
    })?;
    operator.fits(ty).map_err(|why| {
        QueryError::new(
            at,
            format!("operator `{op}` {why} (field `{name}` is {ty})"),
        )
    })?;
    Ok(operator)
}

/// One sort key, by field position. Nulls sort last in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: usize,
    pub descending: bool,
}

/// Records: the rows matching `filter`, in `order`, after the `after` position.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    pub filter: Predicate,
    /// Field positions to return, in answer order.
    pub select: Vec<usize>,
    /// Sort keys; always ends with the primary key, so the order is total and pages are stable.
    pub order: Vec<SortKey>,
    /// At most this many rows; `None` streams every matching row.
    pub limit: Option<usize>,
    /// Values of `order`'s fields in the last row of the previous page.
    pub after: Option<Vec<Value>>,
}

/// A bad query parameter, path segment or cursor, named so the client knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct QueryError {
    /// The query parameter (or `key` for path segments) at fault.
    pub parameter: String,
    pub message: String,
}

impl QueryError {
    pub fn new(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        QueryError {
            parameter: parameter.into(),
            message: message.into(),
        }
    }
}

/// A column of a read's answer: a field, a group key or a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub field_type: FieldType,
}

/// What a read asks storage for.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadPlan {
    Records(RecordQuery),
    Aggregate(Aggregation),
}

impl ReadPlan {
    /// The columns storage answers with, in order.
    pub fn columns(&self, schema: &DatasetSchema) -> Vec<OutputColumn> {
        match self {
            ReadPlan::Records(query) => query
                .fetched_fields()
                .into_iter()
                .map(|i| OutputColumn {
                    name: schema.fields[i].name.clone(),
                    field_type: schema.fields[i].field_type,
                })
                .collect(),
            ReadPlan::Aggregate(aggregation) => aggregation.columns(schema),
        }
    }

    pub fn limit(&self) -> Option<usize> {
        match self {
            ReadPlan::Records(query) => query.limit,
            ReadPlan::Aggregate(aggregation) => aggregation.limit,
        }
    }

    pub fn set_limit(&mut self, limit: Option<usize>) {
        match self {
            ReadPlan::Records(query) => query.limit = limit,
            ReadPlan::Aggregate(aggregation) => aggregation.limit = limit,
        }
    }
}

impl RecordQuery {
    /// The fields a storage answer carries: the selected ones, then sort-key fields not selected
    /// (needed to make the next cursor).
    pub fn fetched_fields(&self) -> Vec<usize> {
        let mut fields = self.select.clone();
        fields.extend(
            self.order
                .iter()
                .map(|k| k.field)
                .filter(|f| !self.select.contains(f)),
        );
        fields
    }
}
