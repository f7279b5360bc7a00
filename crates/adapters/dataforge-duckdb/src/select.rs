//! SQL for reads: filters, keyset positions and order, with every value bound as a parameter.

use dataforge_domain::query::{Comparison, Condition, Filter, RecordQuery, SortKey};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use duckdb::types::Value as DuckValue;

use crate::sql::{bind, column_list, quote};

/// A statement and the values for its `?` placeholders, in order.
#[derive(Debug, Default)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<DuckValue>,
}

/// Builds a WHERE clause, binding values as it goes.
struct Conditions<'a> {
    schema: &'a DatasetSchema,
    terms: Vec<String>,
    params: Vec<DuckValue>,
}

impl<'a> Conditions<'a> {
    fn new(schema: &'a DatasetSchema) -> Self {
        Conditions {
            schema,
            terms: Vec::new(),
            params: Vec::new(),
        }
    }

    fn column(&self, field: usize) -> String {
        quote(&self.schema.fields[field].name)
    }

    fn placeholder(&mut self, value: &Value) -> &'static str {
        self.params.push(bind(value));
        "?"
    }

    fn filter(&mut self, filter: &Filter) {
        let column = self.column(filter.field);
        let term = match &filter.condition {
            Condition::Compare(op, value) => {
                let op = match op {
                    Comparison::Eq => "=",
                    Comparison::Ne => "<>",
                    Comparison::Gt => ">",
                    Comparison::Gte => ">=",
                    Comparison::Lt => "<",
                    Comparison::Lte => "<=",
                };
                format!("{column} {op} {}", self.placeholder(value))
            }
            Condition::In(values) => {
                let marks: Vec<&str> = values.iter().map(|v| self.placeholder(v)).collect();
                format!("{column} IN ({})", marks.join(", "))
            }
            Condition::Like(pattern) => format!(
                "{column} LIKE {}",
                self.placeholder(&Value::String(pattern.clone()))
            ),
            Condition::ILike(pattern) => format!(
                "{column} ILIKE {}",
                self.placeholder(&Value::String(pattern.clone()))
            ),
            Condition::IsNull => format!("{column} IS NULL"),
            Condition::IsNotNull => format!("{column} IS NOT NULL"),
        };
        self.terms.push(term);
    }

    /// Rows strictly after `values` in `order` (nulls last in both directions): for some key i, all
    /// keys before i are equal and key i is past its value.
    fn after(&mut self, order: &[SortKey], values: &[Value]) {
        let mut alternatives = Vec::new();
        for (i, (key, value)) in order.iter().zip(values).enumerate() {
            if value.is_null() {
                continue; // nothing sorts after null in its own column
            }
            let mut parts = Vec::new();
            for (prior, prior_value) in order[..i].iter().zip(values) {
                let column = self.column(prior.field);
                parts.push(if prior_value.is_null() {
                    format!("{column} IS NULL")
                } else {
                    format!("{column} = {}", self.placeholder(prior_value))
                });
            }
            let column = self.column(key.field);
            let op = if key.descending { "<" } else { ">" };
            let past = format!("{column} {op} {}", self.placeholder(value));
            parts.push(if self.schema.fields[key.field].required {
                past
            } else {
                format!("({past} OR {column} IS NULL)")
            });
            alternatives.push(format!("({})", parts.join(" AND ")));
        }
        self.terms.push(if alternatives.is_empty() {
            "FALSE".to_owned()
        } else {
            format!("({})", alternatives.join(" OR "))
        });
    }

    fn finish(self) -> (String, Vec<DuckValue>) {
        let clause = if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        };
        (clause, self.params)
    }
}

/// One page of a listing.
pub(crate) fn page(schema: &DatasetSchema, query: &RecordQuery) -> Statement {
    let mut conditions = Conditions::new(schema);
    for filter in &query.filters {
        conditions.filter(filter);
    }
    if let Some(after) = &query.after {
        conditions.after(&query.order, after);
    }
    let (clause, params) = conditions.finish();
    let columns = column_list(
        query
            .fetched_fields()
            .iter()
            .map(|&i| schema.fields[i].name.as_str()),
    );
    let order: Vec<String> = query
        .order
        .iter()
        .map(|k| {
            format!(
                "{} {} NULLS LAST",
                quote(&schema.fields[k.field].name),
                if k.descending { "DESC" } else { "ASC" }
            )
        })
        .collect();
    Statement {
        sql: format!(
            "SELECT {columns} FROM {}{clause} ORDER BY {} LIMIT {}",
            quote(&schema.name),
            order.join(", "),
            query.limit
        ),
        params,
    }
}

/// A count of matching rows.
pub(crate) fn count(schema: &DatasetSchema, filters: &[Filter]) -> Statement {
    let mut conditions = Conditions::new(schema);
    for filter in filters {
        conditions.filter(filter);
    }
    let (clause, params) = conditions.finish();
    Statement {
        sql: format!("SELECT count(*) FROM {}{clause}", quote(&schema.name)),
        params,
    }
}

/// The row with a given primary key.
pub(crate) fn by_key(schema: &DatasetSchema, key: &[Value]) -> Statement {
    let mut conditions = Conditions::new(schema);
    for (&field, value) in schema.primary_key.iter().zip(key) {
        conditions.filter(&Filter {
            field,
            condition: Condition::Compare(Comparison::Eq, value.clone()),
        });
    }
    let (clause, params) = conditions.finish();
    let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
    Statement {
        sql: format!(
            "SELECT {columns} FROM {}{clause} LIMIT 1",
            quote(&schema.name)
        ),
        params,
    }
}
