//! Aggregates: groups (optionally time buckets), metrics over them, and order and limit applied to
//! the groups. Every part is checked against the schema when parsed.

use super::params::{parse_filters, parse_limit};
use super::{OutputColumn, Predicate, QueryError, QueryLimits, field_at};
use crate::schema::DatasetSchema;
use crate::value::FieldType;

/// A calendar unit that dates and timestamps are truncated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    /// Weeks start on Monday (ISO 8601).
    Week,
    Month,
    Quarter,
    Year,
}

impl Bucket {
    const ALL: [(&'static str, Bucket); 5] = [
        ("day", Bucket::Day),
        ("week", Bucket::Week),
        ("month", Bucket::Month),
        ("quarter", Bucket::Quarter),
        ("year", Bucket::Year),
    ];

    pub fn name(self) -> &'static str {
        Bucket::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("day")
    }
}

/// One group key: a field, or the time bucket a date or timestamp field falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupKey {
    pub field: usize,
    pub bucket: Option<Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl MetricFunction {
    const ALL: [(&'static str, MetricFunction); 5] = [
        ("count", MetricFunction::Count),
        ("sum", MetricFunction::Sum),
        ("avg", MetricFunction::Avg),
        ("min", MetricFunction::Min),
        ("max", MetricFunction::Max),
    ];

    pub fn name(self) -> &'static str {
        MetricFunction::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("count")
    }
}

/// A metric: `count()` counts rows; with a field, the function of its non-null values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub function: MetricFunction,
    pub field: Option<usize>,
}

impl Metric {
    /// The answer column's name: `count`, or `{function}_{field}` (e.g. `sum_oil_production_kbd`).
    pub fn name(&self, schema: &DatasetSchema) -> String {
        match self.field {
            None => self.function.name().to_owned(),
            Some(f) => format!("{}_{}", self.function.name(), schema.fields[f].name),
        }
    }

    /// The type of the metric's values.
    pub fn field_type(&self, schema: &DatasetSchema) -> FieldType {
        match (self.function, self.field) {
            (MetricFunction::Count, _) | (_, None) => FieldType::Integer,
            (MetricFunction::Avg, _) => FieldType::Float,
            (_, Some(f)) => schema.fields[f].field_type,
        }
    }
}

/// An aggregate read: one row per group of the rows matching `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub filter: Predicate,
    pub group_by: Vec<GroupKey>,
    pub metrics: Vec<Metric>,
    /// Output columns (group keys first, then metrics) to sort the groups by, and whether
    /// descending. Group keys ascending follow, so the order is total.
    pub order: Vec<(usize, bool)>,
    pub limit: Option<usize>,
}

impl Aggregation {
    /// The answer's columns: group keys (named after their fields), then metrics.
    pub fn columns(&self, schema: &DatasetSchema) -> Vec<OutputColumn> {
        let keys = self.group_by.iter().map(|k| OutputColumn {
            name: schema.fields[k.field].name.clone(),
            field_type: schema.fields[k.field].field_type,
        });
        let metrics = self.metrics.iter().map(|m| OutputColumn {
            name: m.name(schema),
            field_type: m.field_type(schema),
        });
        keys.chain(metrics).collect()
    }
}

/// The parts of an aggregate as text, wherever they came from, each with where it was given (a
/// URL parameter or a path in a query body) for error messages.
#[derive(Debug, Default)]
pub(crate) struct AggregateText<'a> {
    pub group_by: Vec<(&'a str, String)>,
    pub metrics: Vec<(&'a str, String)>,
    pub buckets: Vec<(&'a str, String)>,
    pub order: Vec<(&'a str, String)>,
}

/// Parses the parameters of `GET .../aggregate`: `group_by`, `metrics`, `bucket`, `order`,
/// `limit` and filters. A `paged` (JSON) answer holds at most `limits.max_limit` groups.
pub fn parse_aggregate_params(
    schema: &DatasetSchema,
    params: &[(String, String)],
    limits: QueryLimits,
    paged: bool,
) -> Result<Aggregation, QueryError> {
    const PARTS: [&str; 5] = ["group_by", "metrics", "bucket", "order", "limit"];
    let mut text = AggregateText::default();
    let mut limit = None;
    for (name, raw) in params {
        let list = match name.as_str() {
            "group_by" => &mut text.group_by,
            "metrics" => &mut text.metrics,
            "bucket" => &mut text.buckets,
            "order" => &mut text.order,
            "limit" => {
                if limit.replace(raw.as_str()).is_some() {
                    return Err(QueryError::new(name, "given more than once"));
                }
                continue;
            }
            "select" | "cursor" => {
                return Err(QueryError::new(
                    name,
                    "does not apply to an aggregate; use group_by and metrics",
                ));
            }
            _ => continue,
        };
        let at = PARTS.into_iter().find(|p| p == name).unwrap_or("group_by");
        list.extend(split_items(raw).map(|item| (at, item)));
    }
    let filter = Predicate::all(parse_filters(schema, params, &PARTS)?);
    let limit = parse_limit("limit", limit, limits, paged)?;
    build(schema, filter, text, limit)
}

/// Splits `a,b` and `sum(a),count()` at commas outside parentheses.
pub(crate) fn split_items(raw: &str) -> impl Iterator<Item = String> + '_ {
    let mut depth = 0i32;
    raw.split(move |c| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        c == ',' && depth == 0
    })
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// Checks aggregate parts against the schema.
pub(crate) fn build(
    schema: &DatasetSchema,
    filter: Predicate,
    text: AggregateText<'_>,
    limit: Option<usize>,
) -> Result<Aggregation, QueryError> {
    let field = |at: &str, name: &str| field_at(schema, at, name);
    let mut group_by: Vec<GroupKey> = Vec::new();
    for (at, name) in &text.group_by {
        let f = field(at, name)?;
        if schema.fields[f].field_type == FieldType::Json {
            return Err(QueryError::new(
                *at,
                format!("field `{name}` is json and cannot be a group key"),
            ));
        }
        if group_by.iter().any(|k| k.field == f) {
            return Err(QueryError::new(
                *at,
                format!("field `{name}` is listed twice"),
            ));
        }
        group_by.push(GroupKey {
            field: f,
            bucket: None,
        });
    }
    for (at, item) in &text.buckets {
        let (name, unit) = item.split_once(':').ok_or_else(|| {
            QueryError::new(
                *at,
                format!("expected `field:unit` (e.g. `production_period:month`), found `{item}`"),
            )
        })?;
        let f = field(at, name)?;
        let ty = schema.fields[f].field_type;
        if !matches!(ty, FieldType::Date | FieldType::Timestamp) {
            return Err(QueryError::new(
                *at,
                format!("field `{name}` is {ty}; buckets apply to date and timestamp fields"),
            ));
        }
        let bucket = Bucket::ALL
            .iter()
            .find(|(n, _)| *n == unit)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                QueryError::new(
                    *at,
                    format!("unknown bucket `{unit}`; buckets: day, week, month, quarter, year"),
                )
            })?;
        match group_by.iter_mut().find(|k| k.field == f) {
            Some(key) if key.bucket.is_some() => {
                return Err(QueryError::new(
                    *at,
                    format!("field `{name}` has two buckets"),
                ));
            }
            Some(key) => key.bucket = Some(bucket),
            None => group_by.push(GroupKey {
                field: f,
                bucket: Some(bucket),
            }),
        }
    }
    let mut metrics: Vec<Metric> = Vec::new();
    for (at, item) in &text.metrics {
        let metric = parse_metric(schema, at, item)?;
        if metrics.contains(&metric) {
            return Err(QueryError::new(
                *at,
                format!("metric `{item}` is listed twice"),
            ));
        }
        metrics.push(metric);
    }
    if metrics.is_empty() && group_by.is_empty() {
        return Err(QueryError::new(
            "metrics",
            "an aggregate needs metrics (e.g. `count()`, `sum(field)`) or group_by",
        ));
    }
    let aggregation = Aggregation {
        filter,
        group_by,
        metrics,
        order: Vec::new(),
        limit,
    };
    let columns = aggregation.columns(schema);
    let mut order: Vec<(usize, bool)> = Vec::new();
    for (at, item) in &text.order {
        for part in item.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, direction) = part.split_once('.').unwrap_or((part, "asc"));
            let descending = match direction {
                "asc" => false,
                "desc" => true,
                _ => {
                    return Err(QueryError::new(
                        *at,
                        format!(
                            "direction must be `asc` or `desc`, found `{direction}` in `{part}`"
                        ),
                    ));
                }
            };
            let column = columns.iter().position(|c| c.name == name).ok_or_else(|| {
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                QueryError::new(
                    *at,
                    format!(
                        "`{name}` is not a column of this aggregate; its columns: {}",
                        names.join(", ")
                    ),
                )
            })?;
            if order.iter().any(|(c, _)| *c == column) {
                return Err(QueryError::new(*at, format!("`{name}` is listed twice")));
            }
            order.push((column, descending));
        }
    }
    Ok(Aggregation {
        order,
        ..aggregation
    })
}

/// Parses `count()`, `count(field)`, `sum(field)`, `avg(field)`, `min(field)` or `max(field)`.
fn parse_metric(schema: &DatasetSchema, at: &str, item: &str) -> Result<Metric, QueryError> {
    let malformed = || {
        QueryError::new(
            at,
            format!(
                "expected `function(field)` or `count()`, found `{item}`; functions: count, sum, avg, min, max"
            ),
        )
    };
    let (name, rest) = item.split_once('(').ok_or_else(malformed)?;
    let argument = rest.strip_suffix(')').ok_or_else(malformed)?.trim();
    let function = MetricFunction::ALL
        .iter()
        .find(|(n, _)| *n == name.trim())
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            QueryError::new(
                at,
                format!("unknown function `{name}`; functions: count, sum, avg, min, max"),
            )
        })?;
    if argument.is_empty() {
        return if function == MetricFunction::Count {
            Ok(Metric {
                function,
                field: None,
            })
        } else {
            Err(QueryError::new(
                at,
                format!("`{name}` needs a field, e.g. `{name}(field)`"),
            ))
        };
    }
    let field = field_at(schema, at, argument)?;
    let ty = schema.fields[field].field_type;
    let fits = match function {
        MetricFunction::Count => true,
        MetricFunction::Sum | MetricFunction::Avg => {
            matches!(ty, FieldType::Integer | FieldType::Float)
        }
        MetricFunction::Min | MetricFunction::Max => ty.is_ordered() || ty.is_text(),
    };
    if !fits {
        let applies = match function {
            MetricFunction::Sum | MetricFunction::Avg => "integer and float fields",
            _ => "integer, float, date, timestamp and string fields",
        };
        return Err(QueryError::new(
            at,
            format!("`{name}` applies to {applies}; field `{argument}` is {ty}"),
        ));
    }
    Ok(Metric {
        function,
        field: Some(field),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wells;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Aggregation, QueryError> {
        parse_aggregate_params(&wells(), &params(pairs), QueryLimits::default(), true)
    }

    #[test]
    fn parses_groups_buckets_metrics_and_order() {
        let s = wells();
        let a = parse(&[
            ("group_by", "field_code"),
            ("metrics", "sum(oil),count(),min(period),avg(well_code)"),
            ("bucket", "period:month"),
            ("order", "sum_oil.desc"),
            ("limit", "5"),
            ("well_code", "gt.3"),
        ])
        .unwrap();
        let names: Vec<String> = a.columns(&s).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "field_code",
                "period",
                "sum_oil",
                "count",
                "min_period",
                "avg_well_code"
            ]
        );
        assert_eq!(a.group_by[1].bucket, Some(Bucket::Month));
        assert_eq!(a.order, vec![(2, true)]);
        assert_eq!(a.limit, Some(5));
        assert!(!a.filter.is_always());
        let types: Vec<FieldType> = a.columns(&s).into_iter().map(|c| c.field_type).collect();
        assert_eq!(
            types,
            [
                FieldType::Integer,
                FieldType::Timestamp,
                FieldType::Float,
                FieldType::Integer,
                FieldType::Timestamp,
                FieldType::Float
            ]
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        for (param, raw, expected) in [
            (
                "metrics",
                "sum(name)",
                "`sum` applies to integer and float fields",
            ),
            ("metrics", "median(oil)", "unknown function `median`"),
            ("metrics", "sum(ghost)", "unknown field `ghost`"),
            ("metrics", "sum()", "`sum` needs a field"),
            ("metrics", "oil", "expected `function(field)`"),
            (
                "bucket",
                "name:month",
                "buckets apply to date and timestamp",
            ),
            ("bucket", "period:fortnight", "unknown bucket `fortnight`"),
            ("bucket", "period", "expected `field:unit`"),
            ("group_by", "ghost", "unknown field `ghost`"),
            ("group_by", "extra", "cannot be a group key"),
            ("order", "nope.desc", "not a column of this aggregate"),
        ] {
            let mut pairs = vec![(param, raw)];
            if param != "metrics" {
                pairs.push(("metrics", "count()"));
            }
            let err = parse(&pairs).unwrap_err();
            assert_eq!(err.parameter, param, "{param}={raw}");
            assert!(
                err.message.contains(expected),
                "{param}={raw}: {}",
                err.message
            );
        }
        assert_eq!(parse(&[]).unwrap_err().parameter, "metrics");
        assert_eq!(
            parse(&[("metrics", "count()"), ("select", "oil")])
                .unwrap_err()
                .parameter,
            "select"
        );
    }
}
