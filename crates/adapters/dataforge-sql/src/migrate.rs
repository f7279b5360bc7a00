//! The SQL of a migration's reads: stored rows as the declared schema would hold them, and the keys
//! of a new primary key that stored rows repeat.

use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::schema::evolve::{DatasetPlan, FieldSource};
use dataforge_domain::value::Value;

use crate::{Dialect, column_list, literal, quote};

/// `SELECT` of the stored rows as the declared fields: kept columns (converted where the type
/// changed, see [`Dialect::converted`]), new fields as their default or null.
pub fn mapped_select(
    dialect: &dyn Dialect,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> String {
    let expressions: Vec<String> = declared
        .fields
        .iter()
        .zip(&plan.sources)
        .map(|(field, source)| {
            let ty = dialect.column_type(field.field_type);
            let value = match source {
                FieldSource::Stored {
                    column,
                    converted: false,
                    ..
                } => quote(column),
                FieldSource::Stored { column, .. } => dialect.converted(&quote(column), ty),
                FieldSource::New => format!(
                    "CAST({} AS {ty})",
                    literal(dialect, field.default.as_ref().unwrap_or(&Value::Null))
                ),
            };
            format!("{value} AS {}", quote(&field.name))
        })
        .collect();
    format!(
        "SELECT {} FROM {}",
        expressions.join(", "),
        quote(&declared.name)
    )
}

/// Keys of the declared primary key that more than one stored row holds (at most `limit`), as
/// rows of the key fields in key order.
pub fn repeated_keys(
    dialect: &dyn Dialect,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
    limit: usize,
) -> String {
    let keys = column_list(declared.key_fields().map(|f| f.name.as_str()));
    format!(
        "SELECT {keys} FROM ({}) AS mapped GROUP BY {keys} HAVING count(*) > 1 LIMIT {limit}",
        mapped_select(dialect, declared, plan)
    )
}
