//! SQL for reads: filters, keyset positions, order and aggregates, with every value bound as a
//! parameter.

use dataforge_domain::query::{
    Aggregation, Bucket, Comparison, Condition, Filter, MetricFunction, Predicate, ReadPlan,
    RecordQuery, SortKey,
};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::FieldType;
use dataforge_domain::value::Value;
use duckdb::types::Value as DuckValue;

use crate::sql::{bind, column_list, column_type, quote};

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

    /// Adds a predicate as one term.
    fn predicate(&mut self, predicate: &Predicate) {
        if !predicate.is_always() {
            let term = self.term(predicate);
            self.terms.push(term);
        }
    }

    fn term(&mut self, predicate: &Predicate) -> String {
        let join = |this: &mut Self, terms: &[Predicate], word: &str, empty: &str| {
            if terms.is_empty() {
                return empty.to_owned();
            }
            let parts: Vec<String> = terms.iter().map(|t| this.term(t)).collect();
            format!("({})", parts.join(word))
        };
        match predicate {
            Predicate::Filter(filter) => self.condition(filter),
            Predicate::And(terms) => join(self, terms, " AND ", "TRUE"),
            Predicate::Or(terms) => join(self, terms, " OR ", "FALSE"),
            Predicate::Not(inner) => format!("(NOT {})", self.term(inner)),
        }
    }

    fn filter(&mut self, filter: &Filter) {
        let term = self.condition(filter);
        self.terms.push(term);
    }

    fn condition(&mut self, filter: &Filter) -> String {
        let column = self.column(filter.field);
        match &filter.condition {
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
            Condition::Between(low, high) => format!(
                "{column} BETWEEN {} AND {}",
                self.placeholder(low),
                self.placeholder(high)
            ),
            Condition::IsNull => format!("{column} IS NULL"),
            Condition::IsNotNull => format!("{column} IS NOT NULL"),
        }
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

/// The statement answering a read plan.
pub(crate) fn plan(schema: &DatasetSchema, plan: &ReadPlan) -> Statement {
    match plan {
        ReadPlan::Records(query) => records(schema, query),
        ReadPlan::Aggregate(aggregation) => aggregate(schema, aggregation),
    }
}

fn limit_clause(limit: Option<usize>) -> String {
    limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
}

/// Matching records in order.
fn records(schema: &DatasetSchema, query: &RecordQuery) -> Statement {
    let mut conditions = Conditions::new(schema);
    conditions.predicate(&query.filter);
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
            "SELECT {columns} FROM {}{clause}{}{}",
            quote(&schema.name),
            if order.is_empty() {
                String::new()
            } else {
                format!(" ORDER BY {}", order.join(", "))
            },
            limit_clause(query.limit)
        ),
        params,
    }
}

/// One row per group: group keys (bucketed where asked), then metrics, in the requested order
/// followed by the group keys.
fn aggregate(schema: &DatasetSchema, aggregation: &Aggregation) -> Statement {
    let mut conditions = Conditions::new(schema);
    conditions.predicate(&aggregation.filter);
    let (clause, params) = conditions.finish();
    let columns = aggregation.columns(schema);
    let keys = aggregation.group_by.iter().map(|key| {
        let field = &schema.fields[key.field];
        let column = quote(&field.name);
        match key.bucket {
            None => column,
            Some(bucket) => {
                let unit = match bucket {
                    Bucket::Day => "day",
                    Bucket::Week => "week",
                    Bucket::Month => "month",
                    Bucket::Quarter => "quarter",
                    Bucket::Year => "year",
                };
                let truncated = format!("date_trunc('{unit}', {column})");
                // dates stay dates; timestamps stay timestamps
                format!("CAST({truncated} AS {})", column_type(field.field_type))
            }
        }
    });
    let metrics = aggregation.metrics.iter().map(|metric| {
        let Some(field) = metric.field else {
            return "count(*)".to_owned();
        };
        let column = quote(&schema.fields[field].name);
        let ty = schema.fields[field].field_type;
        match metric.function {
            MetricFunction::Count => format!("count({column})"),
            // an integer sum is a HUGEINT in DuckDB; answers keep the field's 64-bit type
            MetricFunction::Sum if ty == FieldType::Integer => {
                format!("CAST(sum({column}) AS BIGINT)")
            }
            MetricFunction::Sum => format!("sum({column})"),
            MetricFunction::Avg => format!("avg({column})"),
            MetricFunction::Min => format!("min({column})"),
            MetricFunction::Max => format!("max({column})"),
        }
    });
    let select: Vec<String> = keys
        .chain(metrics)
        .zip(&columns)
        .map(|(expr, column)| format!("{expr} AS {}", quote(&column.name)))
        .collect();
    let group_count = aggregation.group_by.len();
    let group_by = if group_count == 0 {
        String::new()
    } else {
        let positions: Vec<String> = (1..=group_count).map(|i| i.to_string()).collect();
        format!(" GROUP BY {}", positions.join(", "))
    };
    let mut order: Vec<String> = aggregation
        .order
        .iter()
        .map(|(column, descending)| {
            format!(
                "{} {} NULLS LAST",
                column + 1,
                if *descending { "DESC" } else { "ASC" }
            )
        })
        .collect();
    order.extend(
        (0..group_count)
            .filter(|c| !aggregation.order.iter().any(|(o, _)| o == c))
            .map(|c| format!("{} ASC NULLS LAST", c + 1)),
    );
    let order = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    Statement {
        sql: format!(
            "SELECT {} FROM {}{clause}{group_by}{order}{}",
            select.join(", "),
            quote(&schema.name),
            limit_clause(aggregation.limit)
        ),
        params,
    }
}

/// A count of matching rows; `sample_percent` counts a system sample of the table instead and
/// scales it up.
pub(crate) fn count(
    schema: &DatasetSchema,
    filter: &Predicate,
    sample_percent: Option<u32>,
) -> Statement {
    let mut conditions = Conditions::new(schema);
    conditions.predicate(filter);
    let (clause, params) = conditions.finish();
    let sql = match sample_percent {
        None => format!("SELECT count(*) FROM {}{clause}", quote(&schema.name)),
        Some(percent) => format!(
            "SELECT CAST(count(*) * {} AS BIGINT) FROM {} TABLESAMPLE {percent}% (system){clause}",
            100 / percent.max(1),
            quote(&schema.name)
        ),
    };
    Statement { sql, params }
}

/// ` WHERE …` for `filter` (empty when it holds for every row), and its parameters: the rows an
/// update or a delete changes.
pub(crate) fn where_clause(schema: &DatasetSchema, filter: &Predicate) -> Statement {
    let mut conditions = Conditions::new(schema);
    conditions.predicate(filter);
    let (sql, params) = conditions.finish();
    Statement { sql, params }
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
