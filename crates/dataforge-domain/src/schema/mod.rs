//! Dataset schemas: the declared shape of each dataset, from which tables, validation and the API
//! are all derived.

mod build;
mod document;
mod draft;
pub mod evolve;
pub mod stored_check;

use crate::timestamps::TimestampInput;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use regex::Regex;

pub use build::{SchemaProblem, build_catalog};
pub use document::{from_document, to_document};
pub use draft::{DatasetDraft, FieldDraft, Located, PartitionDraft};

use crate::value::{FieldType, Value};

/// A dataset as declared, checked and ready to use.
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    pub name: String,
    pub description: String,
    pub fields: Vec<FieldSchema>,
    /// Positions in `fields` of the primary-key fields, in key order.
    pub primary_key: Vec<usize>,
    /// Secondary indexes, each as positions in `fields`.
    pub indexes: Vec<Vec<usize>>,
    /// Fields (positions) stored data is ordered by when it is clustered, so that filters on
    /// them skip most of the table; empty when not declared.
    pub cluster_by: Vec<usize>,
    /// How a store that partitions tables (PostgreSQL) splits this one by time; none by default.
    pub partition_by: Option<Partitioning>,
    arrow: SchemaRef,
}

/// A table split into ranges of a date or timestamp field of the primary key, one partition per
/// calendar month or year, so that retention deletes drop whole partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioning {
    /// Position in `fields`.
    pub field: usize,
    pub interval: PartitionInterval,
}

/// The width of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionInterval {
    Month,
    Year,
}

impl PartitionInterval {
    pub fn name(self) -> &'static str {
        match self {
            PartitionInterval::Month => "month",
            PartitionInterval::Year => "year",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "month" => Some(PartitionInterval::Month),
            "year" => Some(PartitionInterval::Year),
            _ => None,
        }
    }
}

/// One declared field.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    pub name: String,
    pub field_type: FieldType,
    /// Whether null is refused (always true for primary-key fields).
    pub required: bool,
    /// Used when a record omits the field.
    pub default: Option<Value>,
    pub description: String,
    pub constraints: Constraints,
    /// The name this field had in the stored schema: a migration renames the column, keeping its
    /// data. Not part of the schema's shape (nothing stores it).
    pub renamed_from: Option<String>,
    /// How a timestamp field reads local times and numbers (default for other types).
    pub timestamps: TimestampInput,
}

/// Rules a non-null value must follow.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    pub min: Option<Value>,
    pub max: Option<Value>,
    pub one_of: Option<Vec<Value>>,
    pub pattern: Option<Pattern>,
    /// Maximum length in characters.
    pub max_length: Option<u64>,
}

/// A compiled regular expression with its source kept for display.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

impl DatasetSchema {
    pub(crate) fn new(
        name: String,
        description: String,
        fields: Vec<FieldSchema>,
        primary_key: Vec<usize>,
        indexes: Vec<Vec<usize>>,
        cluster_by: Vec<usize>,
    ) -> Self {
        let arrow = Arc::new(Schema::new(
            fields
                .iter()
                .map(|f| Field::new(&f.name, f.field_type.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        DatasetSchema {
            name,
            description,
            fields,
            primary_key,
            indexes,
            cluster_by,
            partition_by: None,
            arrow,
        }
    }

    /// The Arrow schema of this dataset's record batches, fields in declared order. Every column is
    /// nullable here: `required` is enforced by validation, so a batch with a missing value can still
    /// be built and its row reported.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    /// Position of a field by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn key_fields(&self) -> impl Iterator<Item = &FieldSchema> {
        self.primary_key.iter().map(|&i| &self.fields[i])
    }

    /// The schema partial records of a merge are decoded and validated with: fields outside the
    /// key are optional and have no default, so a field the record leaves out stays null and the
    /// stored value is kept. Types and rules still apply; whether a record whose key is new is
    /// complete is checked by storage, which alone knows which keys are stored.
    pub fn for_merge(&self) -> DatasetSchema {
        let mut partial = self.clone();
        for (i, field) in partial.fields.iter_mut().enumerate() {
            if !self.primary_key.contains(&i) {
                field.required = false;
                field.default = None;
            }
        }
        partial
    }

    /// Names of the fields, comma separated, for error messages.
    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every dataset the server knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    datasets: BTreeMap<String, Arc<DatasetSchema>>,
}

impl Catalog {
    /// A catalog of already checked schemas (e.g. those stored in a database).
    pub fn of(schemas: impl IntoIterator<Item = Arc<DatasetSchema>>) -> Catalog {
        Catalog {
            datasets: schemas
                .into_iter()
                .map(|schema| (schema.name.clone(), schema))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<DatasetSchema>> {
        self.datasets.get(name)
    }

    /// Datasets in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<DatasetSchema>> {
        self.datasets.values()
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }
}
