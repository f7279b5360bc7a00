//! Aggregates: groups (optionally time buckets), metrics over them, and order and limit applied to
//! the groups. Every part is checked against the schema when parsed.

use super::bucket::Bucket;
use super::metric::{Metric, parse_metric};
use super::params::{parse_condition, parse_filters, parse_limit};
use super::{Condition, OutputColumn, Predicate, QueryError, QueryLimits, field_at};
use crate::schema::DatasetSchema;
use crate::value::FieldType;

/// One group key: a field, or the time bucket a date or timestamp field falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupKey {
    pub field: usize,
    pub bucket: Option<Bucket>,
}

/// A condition on a metric's value in each group (SQL's HAVING): groups failing it are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Having {
    /// The metric, by its position in [`Aggregation::metrics`].
    pub metric: usize,
    pub condition: Condition,
}

/// An aggregate read: one row per group of the rows matching `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub filter: Predicate,
    pub group_by: Vec<GroupKey>,
    pub metrics: Vec<Metric>,
    /// Conditions on metric values, all of which a group must meet.
    pub having: Vec<Having>,
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
    /// `metric=operator.value` each.
    pub having: Vec<(&'a str, String)>,
}

/// The URL parameters (and query-body parts) of an aggregate besides filters.
const PARTS: [&str; 6] = ["group_by", "metrics", "bucket", "order", "limit", "having"];

/// Parses the parameters of `GET .../aggregate`: `group_by`, `metrics`, `bucket`, `order`,
/// `having`, `limit` and filters. A `paged` (JSON) answer holds at most `limits.max_limit` groups,
/// and that many when `limit` is not given.
pub fn parse_aggregate_params(
    schema: &DatasetSchema,
    params: &[(String, String)],
    limits: QueryLimits,
    paged: bool,
) -> Result<Aggregation, QueryError> {
    let mut text = AggregateText::default();
    let mut limit = None;
    for (name, raw) in params {
        let list = match name.as_str() {
            "group_by" => &mut text.group_by,
            "metrics" => &mut text.metrics,
            "bucket" => &mut text.buckets,
            "order" => &mut text.order,
            "having" => {
                // one condition a parameter: a value may hold commas (`in.(1,2)`)
                text.having.push(("having", raw.trim().to_owned()));
                continue;
            }
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
    let limit = group_limit("limit", limit, limits, paged)?;
    build(schema, filter, text, limit)
}

/// The most groups an aggregate answers: `raw` if given; with none, every group when streamed and
/// `max_limit` of them in a JSON page (an aggregate's groups have no next page to ask for).
pub(crate) fn group_limit(
    at: &str,
    raw: Option<&str>,
    limits: QueryLimits,
    paged: bool,
) -> Result<Option<usize>, QueryError> {
    let limits = QueryLimits {
        default_limit: limits.max_limit,
        ..limits
    };
    parse_limit(at, raw, limits, paged)
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
    let mut group_by = group_keys(schema, &text.group_by)?;
    add_buckets(schema, &text.buckets, &mut group_by)?;
    let metrics = metrics(schema, &text.metrics)?;
    if metrics.is_empty() && group_by.is_empty() {
        return Err(QueryError::new(
            "metrics",
            "an aggregate needs metrics (e.g. `count()`, `sum(field)`) or group_by",
        ));
    }
    let mut aggregation = Aggregation {
        filter,
        group_by,
        metrics,
        having: Vec::new(),
        order: Vec::new(),
        limit,
    };
    let columns = aggregation.columns(schema);
    aggregation.order = order(&columns, &text.order)?;
    let metric_columns = &columns[aggregation.group_by.len()..];
    aggregation.having = text
        .having
        .iter()
        .map(|(at, item)| parse_having(metric_columns, at, item))
        .collect::<Result<_, _>>()?;
    Ok(aggregation)
}

/// `group_by` fields: each once, none json.
fn group_keys(
    schema: &DatasetSchema,
    names: &[(&str, String)],
) -> Result<Vec<GroupKey>, QueryError> {
    let mut group_by: Vec<GroupKey> = Vec::new();
    for (at, name) in names {
        let f = field_at(schema, at, name)?;
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
    Ok(group_by)
}

/// `bucket` items (`field:unit`): the field's group key is bucketed, added if not listed.
fn add_buckets(
    schema: &DatasetSchema,
    items: &[(&str, String)],
    group_by: &mut Vec<GroupKey>,
) -> Result<(), QueryError> {
    for (at, item) in items {
        let (name, unit) = item.split_once(':').ok_or_else(|| {
            QueryError::new(
                *at,
                format!("expected `field:unit` (e.g. `production_period:month`), found `{item}`"),
            )
        })?;
        let f = field_at(schema, at, name)?;
        let ty = schema.fields[f].field_type;
        if !matches!(ty, FieldType::Date | FieldType::Timestamp) {
            return Err(QueryError::new(
                *at,
                format!("field `{name}` is {ty}; buckets apply to date and timestamp fields"),
            ));
        }
        let bucket = Bucket::parse(at, unit, name, ty)?;
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
    Ok(())
}

/// `metrics` items, each once.
fn metrics(schema: &DatasetSchema, items: &[(&str, String)]) -> Result<Vec<Metric>, QueryError> {
    let mut metrics: Vec<Metric> = Vec::new();
    for (at, item) in items {
        let metric = parse_metric(schema, at, item)?;
        if metrics
            .iter()
            .any(|m| m.name(schema) == metric.name(schema))
        {
            return Err(QueryError::new(
                *at,
                format!("metric `{item}` is listed twice"),
            ));
        }
        metrics.push(metric);
    }
    Ok(metrics)
}

/// `order` items: output columns, each once, `.asc` (the default) or `.desc`.
fn order(
    columns: &[OutputColumn],
    items: &[(&str, String)],
) -> Result<Vec<(usize, bool)>, QueryError> {
    let mut order: Vec<(usize, bool)> = Vec::new();
    for (at, item) in items {
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
                QueryError::new(
                    *at,
                    format!(
                        "`{name}` is not a column of this aggregate; its columns: {}",
                        column_names(columns)
                    ),
                )
            })?;
            if order.iter().any(|(c, _)| *c == column) {
                return Err(QueryError::new(*at, format!("`{name}` is listed twice")));
            }
            order.push((column, descending));
        }
    }
    Ok(order)
}

/// `metric=operator.value`: a filter on a metric's value, with the operators (and their type
/// rules) of field filters.
fn parse_having(metrics: &[OutputColumn], at: &str, item: &str) -> Result<Having, QueryError> {
    let (name, condition) = item.split_once('=').ok_or_else(|| {
        QueryError::new(
            at,
            format!("expected `metric=operator.value` (e.g. `count=gt.10`), found `{item}`"),
        )
    })?;
    let name = name.trim();
    let metric = metrics.iter().position(|c| c.name == name).ok_or_else(|| {
        let known = match metrics {
            [] => "this aggregate has no metrics".to_owned(),
            _ => format!("its metrics: {}", column_names(metrics)),
        };
        QueryError::new(
            at,
            format!("`{name}` is not a metric of this aggregate; {known}"),
        )
    })?;
    let condition = parse_condition(at, name, metrics[metric].field_type, condition)?;
    Ok(Having { metric, condition })
}

fn column_names(columns: &[OutputColumn]) -> String {
    columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
        assert_eq!(
            a.group_by[1].bucket.map(|b| (b.unit, b.count)),
            Some((crate::query::BucketUnit::Month, 1))
        );
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
            ("metrics", "mode(oil)", "unknown function `mode`"),
            ("metrics", "percentile(oil,2)", "from 0 to 1"),
            ("bucket", "period:0minute", "from 1 to"),
            (
                "having",
                "ghost=gt.1",
                "`ghost` is not a metric of this aggregate",
            ),
            ("having", "field_code=gt.1", "not a metric"),
            ("having", "count>5", "expected `metric=operator.value`"),
            ("having", "count=gt.many", "not a valid integer"),
            ("having", "count=like.1%", "applies to string fields only"),
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
        let no_metrics =
            parse(&[("group_by", "field_code"), ("having", "count=gt.1")]).unwrap_err();
        assert!(
            no_metrics.message.contains("has no metrics"),
            "{}",
            no_metrics.message
        );
        assert_eq!(
            parse(&[("metrics", "count()"), ("select", "oil")])
                .unwrap_err()
                .parameter,
            "select"
        );
    }

    #[test]
    fn having_filters_metrics_with_the_filter_operators() {
        let a = parse(&[
            ("group_by", "field_code"),
            ("metrics", "count(),sum(oil),min(name)"),
            ("having", "sum_oil=gt.100"),
            ("having", "count=in.(1,2,3)"),
            ("having", "min_name=ilike.a*"),
            ("having", "sum_oil=is.notnull"),
        ])
        .unwrap();
        assert_eq!(
            a.having,
            vec![
                Having {
                    metric: 1,
                    condition: Condition::Compare(
                        crate::query::Comparison::Gt,
                        crate::value::Value::Float(100.0)
                    )
                },
                Having {
                    metric: 0,
                    condition: Condition::In((1..=3).map(crate::value::Value::Integer).collect())
                },
                Having {
                    metric: 2,
                    condition: Condition::ILike("a%".into())
                },
                Having {
                    metric: 1,
                    condition: Condition::IsNotNull
                },
            ]
        );
    }

    #[test]
    fn a_json_page_of_groups_holds_up_to_max_limit_without_limit() {
        let limits = QueryLimits {
            default_limit: 7,
            max_limit: 70,
        };
        let count = params(&[("metrics", "count()")]);
        let paged = parse_aggregate_params(&wells(), &count, limits, true).unwrap();
        assert_eq!(paged.limit, Some(70));
        let streamed = parse_aggregate_params(&wells(), &count, limits, false).unwrap();
        assert_eq!(streamed.limit, None);
        let body = serde_json::json!({"metrics": "count()"});
        let Ok(crate::query::ReadPlan::Aggregate(from_body)) =
            crate::query::parse_query_body(&wells(), &body, limits, true)
        else {
            panic!("not an aggregate")
        };
        assert_eq!(from_body.limit, Some(70));
        let records =
            crate::query::parse_query_body(&wells(), &serde_json::json!({}), limits, true);
        assert_eq!(records.map(|plan| plan.limit()), Ok(Some(7)));
    }
}
