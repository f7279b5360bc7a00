//! The SQL of migrations: the columns a table gains or loosens in place, stored rows as the declared
//! schema would hold them, and the keys of a new primary key that stored rows repeat.

use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::schema::evolve::{DatasetPlan, FieldSource};
use dataforge_domain::value::Value;

use crate::{Dialect, column_list, literal, quote};

/// The statements that change a table in place as the plan says (columns appended with their
/// default, `NOT NULL` set or dropped where a field's `required` changed); a plan that rewrites the
/// table is each store's own business.
pub fn column_changes(
    dialect: &dyn Dialect,
    stored: &DatasetSchema,
    declared: &DatasetSchema,
    plan: &DatasetPlan,
) -> Vec<String> {
    let table = quote(&declared.name);
    let mut statements = Vec::new();
    for (field, source) in declared.fields.iter().zip(&plan.sources) {
        let column = quote(&field.name);
        let was_required = match source {
            FieldSource::New => {
                let default = field
                    .default
                    .as_ref()
                    .map(|value| format!(" DEFAULT {}", literal(dialect, value)))
                    .unwrap_or_default();
                statements.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {}{default}",
                    dialect.column_type(field.field_type)
                ));
                false
            }
            FieldSource::Stored { column, .. } => stored.field(column).is_some_and(|f| f.required),
        };
        if was_required != field.required {
            let null = if field.required { "SET" } else { "DROP" };
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {column} {null} NOT NULL"
            ));
        }
    }
    statements
}

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
