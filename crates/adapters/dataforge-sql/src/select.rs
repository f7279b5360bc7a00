//! SQL for reads: filters, keyset positions, order and aggregates, with every value bound as a
//! parameter.

use dataforge_domain::query::{
    Aggregation, Bucket, BucketUnit, Comparison, Condition, Filter, Metric, MetricFunction,
    Predicate, ReadPlan, RecordQuery, SortKey,
};
use dataforge_domain::schema::{DatasetSchema, FieldSchema};
use dataforge_domain::value::FieldType;
use dataforge_domain::value::Value;

use crate::{Dialect, column_list, quote};

/// A statement and the values for its placeholders, in order.
#[derive(Debug, Default)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// Values bound so far, answering each one's placeholder.
struct Params<'d> {
    dialect: &'d dyn Dialect,
    values: Vec<Value>,
}

impl Params<'_> {
    fn bind(&mut self, value: &Value) -> String {
        self.values.push(value.clone());
        self.dialect.placeholder(self.values.len())
    }
}

/// Builds a WHERE clause, binding values as it goes.
struct Conditions<'a> {
    schema: &'a DatasetSchema,
    terms: Vec<String>,
    params: Params<'a>,
}

impl<'a> Conditions<'a> {
    fn new(dialect: &'a dyn Dialect, schema: &'a DatasetSchema) -> Self {
        Conditions {
            schema,
            terms: Vec::new(),
            params: Params {
                dialect,
                values: Vec::new(),
            },
        }
    }

    fn column(&self, field: usize) -> String {
        quote(&self.schema.fields[field].name)
    }

    fn placeholder(&mut self, value: &Value) -> String {
        self.params.bind(value)
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
        render(&column, &filter.condition, &mut self.params)
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

    fn finish(self) -> (String, Params<'a>) {
        let clause = if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        };
        (clause, self.params)
    }
}

/// A condition on `column` (a quoted column or an expression) as SQL, from its operator's
/// template, binding its operands into `params` in the order they appear.
fn render(column: &str, condition: &Condition, params: &mut Params<'_>) -> String {
    let mut operands = condition.operands().into_iter();
    let mut sql = String::new();
    let mut rest = condition.operator().sql;
    while let Some(start) = rest.find('{') {
        sql.push_str(&rest[..start]);
        let Some(length) = rest[start..].find('}') else {
            break;
        };
        match &rest[start + 1..start + length] {
            "column" => sql.push_str(column),
            "value" => {
                if let Some(value) = operands.next() {
                    sql.push_str(&params.bind(&value));
                }
            }
            "values" => {
                let marks: Vec<String> =
                    operands.by_ref().map(|value| params.bind(&value)).collect();
                sql.push_str(&marks.join(", "));
            }
            "null" => sql.push_str(condition.null_words()),
            _ => sql.push_str(&rest[start..=start + length]),
        }
        rest = &rest[start + length + 1..];
    }
    sql.push_str(rest);
    sql
}

/// The statement answering a read plan.
pub fn plan(dialect: &dyn Dialect, schema: &DatasetSchema, plan: &ReadPlan) -> Statement {
    match plan {
        ReadPlan::Records(query) => records(dialect, schema, query),
        ReadPlan::Aggregate(aggregation) => aggregate(dialect, schema, aggregation),
    }
}

fn limit_clause(limit: Option<usize>) -> String {
    limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
}

/// Matching records in order.
fn records(dialect: &dyn Dialect, schema: &DatasetSchema, query: &RecordQuery) -> Statement {
    let mut conditions = Conditions::new(dialect, schema);
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
        params: params.values,
    }
}

/// One row per group: group keys (bucketed where asked), then metrics, the groups whose metrics
/// meet `having`, in the requested order followed by the group keys.
fn aggregate(
    dialect: &dyn Dialect,
    schema: &DatasetSchema,
    aggregation: &Aggregation,
) -> Statement {
    let mut conditions = Conditions::new(dialect, schema);
    conditions.predicate(&aggregation.filter);
    let (clause, mut params) = conditions.finish();
    let columns = aggregation.columns(schema);
    let keys = aggregation
        .group_by
        .iter()
        .map(|key| group_key(dialect, &schema.fields[key.field], key.bucket));
    let metrics: Vec<String> = aggregation
        .metrics
        .iter()
        .map(|m| metric(dialect, schema, m))
        .collect();
    let select: Vec<String> = keys
        .chain(metrics.iter().cloned())
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
    // HAVING's values are bound after WHERE's, as they come after them in the text
    let having: Vec<String> = aggregation
        .having
        .iter()
        .map(|h| render(&metrics[h.metric], &h.condition, &mut params))
        .collect();
    let having = if having.is_empty() {
        String::new()
    } else {
        format!(" HAVING {}", having.join(" AND "))
    };
    Statement {
        sql: format!(
            "SELECT {} FROM {}{clause}{group_by}{having}{}{}",
            select.join(", "),
            quote(&schema.name),
            group_order(aggregation),
            limit_clause(aggregation.limit)
        ),
        params: params.values,
    }
}

/// A group key: the field, or the bucket it falls in, of the field's type (dates stay dates).
/// One unit truncates (`date_trunc`); a multiple is the dialect's (see [`Dialect::bucket`]).
fn group_key(dialect: &dyn Dialect, field: &FieldSchema, bucket: Option<Bucket>) -> String {
    let column = quote(&field.name);
    let Some(bucket) = bucket else {
        return column;
    };
    let truncated = match (bucket.unit, bucket.count) {
        (unit, 1) => format!("date_trunc('{}', {column})", unit.name()),
        (BucketUnit::Quarter, n) => dialect.bucket(BucketUnit::Month, 3 * n, &column),
        (BucketUnit::Week, n) => dialect.bucket(BucketUnit::Day, 7 * n, &column),
        (unit, n) => dialect.bucket(unit, n, &column),
    };
    format!(
        "CAST({truncated} AS {})",
        dialect.column_type(field.field_type)
    )
}

/// A metric's SQL expression.
fn metric(dialect: &dyn Dialect, schema: &DatasetSchema, metric: &Metric) -> String {
    let Some(field) = metric.field else {
        return "count(*)".to_owned();
    };
    let column = quote(&schema.fields[field].name);
    let ty = schema.fields[field].field_type;
    // quantiles interpolate between values, so they are taken of doubles
    let double = format!(
        "CAST({column} AS {})",
        dialect.column_type(FieldType::Float)
    );
    let quantile = |p: f64| dialect.quantile(&double, p);
    match metric.function {
        MetricFunction::Count => format!("count({column})"),
        MetricFunction::CountDistinct => format!("count(DISTINCT {column})"),
        // an integer sum is wider than 64 bits in DuckDB and PostgreSQL; answers keep the field's type
        MetricFunction::Sum if ty == FieldType::Integer => {
            format!("CAST(sum({column}) AS BIGINT)")
        }
        MetricFunction::Sum => format!("sum({column})"),
        // an average of integers is a NUMERIC in PostgreSQL; answers are doubles
        MetricFunction::Avg => format!(
            "CAST(avg({column}) AS {})",
            dialect.column_type(FieldType::Float)
        ),
        MetricFunction::Min => format!("min({column})"),
        MetricFunction::Max => format!("max({column})"),
        MetricFunction::Median => quantile(0.5),
        MetricFunction::Percentile => quantile(metric.fraction.unwrap_or(0.5)),
        MetricFunction::Stddev => format!("stddev_samp({double})"),
    }
}

/// ` ORDER BY` the requested output columns, then the group keys not among them.
fn group_order(aggregation: &Aggregation) -> String {
    let group_count = aggregation.group_by.len();
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
    if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    }
}

/// A count of matching rows; `sample_percent` counts a system sample of the table instead and
/// scales it up (`TABLESAMPLE ... (system)`, which DuckDB and PostgreSQL both read).
pub fn count(
    dialect: &dyn Dialect,
    schema: &DatasetSchema,
    filter: &Predicate,
    sample_percent: Option<u32>,
) -> Statement {
    let mut conditions = Conditions::new(dialect, schema);
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
    Statement {
        sql,
        params: params.values,
    }
}

/// ` WHERE …` for `filter` (empty when it holds for every row), and its parameters: the rows an
/// update or a delete changes.
pub fn where_clause(
    dialect: &dyn Dialect,
    schema: &DatasetSchema,
    filter: &Predicate,
) -> Statement {
    let mut conditions = Conditions::new(dialect, schema);
    conditions.predicate(filter);
    let (sql, params) = conditions.finish();
    Statement {
        sql,
        params: params.values,
    }
}

/// The row with a given primary key.
pub fn by_key(dialect: &dyn Dialect, schema: &DatasetSchema, key: &[Value]) -> Statement {
    let mut conditions = Conditions::new(dialect, schema);
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
        params: params.values,
    }
}
