//! The query model: what a read asks for (filters, projection, order, page size, position), checked
//! against the schema when it is parsed so storage adapters only ever see valid, typed queries.

mod cursor;
mod params;

pub use cursor::Cursor;
pub use params::{QueryLimits, parse_count_params, parse_key, parse_list_params};

use crate::value::Value;

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
    IsNull,
    IsNotNull,
}

/// A condition on one field, by its position in the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: usize,
    pub condition: Condition,
}

/// One sort key, by field position. Nulls sort last in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: usize,
    pub descending: bool,
}

/// A page of records: the rows matching every filter, in `order`, after the `after` position.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    pub filters: Vec<Filter>,
    /// Field positions to return, in answer order.
    pub select: Vec<usize>,
    /// Sort keys; always ends with the primary key, so the order is total and pages are stable.
    pub order: Vec<SortKey>,
    pub limit: usize,
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
