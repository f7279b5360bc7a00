//! Dataset declarations as read from a source, before any rule is checked. A schema source (the
//! TOML files adapter) fills these in, with the line each part came from, so that every problem
//! can point at the line to fix.

/// A value with the line (1-based) it was declared on, when the source knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: Option<usize>,
}

impl<T> Located<T> {
    pub fn new(value: T, line: Option<usize>) -> Self {
        Located { value, line }
    }
}

/// One dataset as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetDraft {
    /// Where the declaration came from (a file path), for messages.
    pub origin: String,
    pub line: Option<usize>,
    pub name: Option<Located<String>>,
    pub description: Option<String>,
    pub fields: Vec<FieldDraft>,
    pub primary_key: Option<Located<Vec<String>>>,
    pub indexes: Vec<Located<Vec<String>>>,
    pub cluster_by: Option<Located<Vec<String>>>,
    /// `partition_by = { field = "...", interval = "month" | "year" }`.
    pub partition_by: Option<Located<PartitionDraft>>,
    /// The time zone local times are read in, for every timestamp field that names none.
    pub timezone: Option<Located<String>>,
}

/// A partitioning as declared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartitionDraft {
    pub field: Option<String>,
    pub interval: Option<String>,
}

/// One field as declared. Bounds and defaults are JSON values, read against the type later.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldDraft {
    pub line: Option<usize>,
    pub name: Option<Located<String>>,
    pub field_type: Option<Located<String>>,
    /// Whether the field must have a value; `None` when the declaration does not say.
    pub required: Option<Located<bool>>,
    pub default: Option<Located<serde_json::Value>>,
    pub description: Option<String>,
    pub min: Option<Located<serde_json::Value>>,
    pub max: Option<Located<serde_json::Value>>,
    pub one_of: Option<Located<Vec<serde_json::Value>>>,
    pub pattern: Option<Located<String>>,
    pub max_length: Option<Located<i64>>,
    /// The field's name in the stored schema, when it is renamed: its data is kept.
    pub renamed_from: Option<Located<String>>,
    /// Timestamp fields: the IANA zone local times (no offset) are read in.
    pub timezone: Option<Located<String>>,
    /// Timestamp fields: numbers are seconds (`s`) or milliseconds (`ms`) since 1970.
    pub epoch: Option<Located<String>>,
}
