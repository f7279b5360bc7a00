//! The query language of `POST .../query`: a JSON body whose every part is checked against the
//! schema, with errors naming the path in the body that is wrong (e.g. `filter.and[2].gte`).
//!
//! ```json
//! {"filter": {"and": [{"eq": {"field_code": 12}},
//!                     {"between": {"production_period": ["2000-01-01", "2010-12-31"]}},
//!                     {"not": {"is_null": "well_name"}}]},
//!  "select": ["well_code", "oil_production_kbd"], "order": ["production_period.desc"],
//!  "limit": 100, "cursor": null}
//! ```
//! With `group_by`, `metrics`, `bucket` or `having` it is an aggregate (see [`super::Aggregation`]),
//! which answers up to `query.max_limit` groups when `limit` is not given.

use serde_json::Value as Json;

use super::aggregate::{AggregateText, build, group_limit};
use super::cursor::Cursor;
use super::params::{parse_limit, parse_order, parse_select};
use super::{
    Condition, Filter, Operand, Operator, Predicate, QueryError, QueryLimits, ReadPlan,
    RecordQuery, check_operator, field_at, operator, operator_names,
};
use crate::schema::DatasetSchema;
use crate::value::Value;

/// Deepest nesting of `and`/`or`/`not` a filter may have.
pub const FILTER_MAX_DEPTH: usize = 16;
/// Most nodes (operators and `in` values) a filter may have.
pub const FILTER_MAX_NODES: usize = 1000;

const PARTS: [&str; 9] = [
    "filter", "select", "order", "limit", "cursor", "group_by", "metrics", "bucket", "having",
];

/// Parses a query body. A `paged` (JSON) answer has a page size of at most `limits.max_limit`.
pub fn parse_query_body(
    schema: &DatasetSchema,
    body: &Json,
    limits: QueryLimits,
    paged: bool,
) -> Result<ReadPlan, QueryError> {
    let parts = body_parts(body, &PARTS)?;
    let present = |name: &str| parts.get(name).filter(|v| !v.is_null());
    let filter = filter_part(schema, present("filter"))?;
    let limit = match present("limit") {
        None => None,
        Some(Json::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(QueryError::new("limit", "must be a positive integer")),
    };
    let order = text_items(present("order"), "order")?;
    let aggregate = ["group_by", "metrics", "bucket", "having"]
        .iter()
        .any(|p| present(p).is_some());
    if aggregate {
        let limit = group_limit("limit", limit.as_deref(), limits, paged)?;
        if let Some(part) = ["select", "cursor"].iter().find(|p| present(p).is_some()) {
            return Err(QueryError::new(
                *part,
                "does not apply to an aggregate; use group_by and metrics",
            ));
        }
        let text = AggregateText {
            group_by: text_items(present("group_by"), "group_by")?,
            metrics: text_items(present("metrics"), "metrics")?,
            buckets: text_items(present("bucket"), "bucket")?,
            order,
            having: having_items(present("having"))?,
        };
        return build(schema, filter, text, limit).map(ReadPlan::Aggregate);
    }
    let limit = parse_limit("limit", limit.as_deref(), limits, paged)?;
    let select = match text_items(present("select"), "select")? {
        items if items.is_empty() => (0..schema.fields.len()).collect(),
        items => {
            let mut select = Vec::new();
            for (at, name) in items {
                for f in parse_select(schema, &name, at)? {
                    if select.contains(&f) {
                        return Err(QueryError::new(
                            at,
                            format!("field `{}` is listed twice", schema.fields[f].name),
                        ));
                    }
                    select.push(f);
                }
            }
            select
        }
    };
    let order_text: Vec<String> = order.iter().map(|(_, t)| t.clone()).collect();
    let order_at = order.first().map(|(at, _)| *at).unwrap_or("order");
    // the primary key ends every order: a stream asked for none comes in key order
    let order = parse_order(schema, &order_text.join(","), order_at)?;
    let after = match present("cursor") {
        None => None,
        Some(Json::String(token)) => Some(Cursor::decode(schema, &order, token)?.values),
        Some(_) => {
            return Err(QueryError::new(
                "cursor",
                "must be the `next_cursor` string of the previous page",
            ));
        }
    };
    Ok(ReadPlan::Records(RecordQuery {
        filter,
        select,
        order,
        limit,
        after,
    }))
}

/// A part given as a string (`"a,b"`) or an array of strings, each item with the part's name.
fn text_items(
    value: Option<&Json>,
    part: &'static str,
) -> Result<Vec<(&'static str, String)>, QueryError> {
    match value {
        None => Ok(Vec::new()),
        Some(Json::String(text)) => Ok(super::aggregate::split_items(text)
            .map(|item| (part, item))
            .collect()),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::String(text) => Ok((part, text.trim().to_owned())),
                _ => Err(QueryError::new(format!("{part}[{i}]"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(QueryError::new(
            part,
            "must be a string or an array of strings",
        )),
    }
}

/// The `having` part: one `metric=operator.value` string, or an array of them (all must hold).
/// Strings are not split at commas, which a value may hold (`in.(1,2)`).
fn having_items(value: Option<&Json>) -> Result<Vec<(&'static str, String)>, QueryError> {
    match value {
        None => Ok(Vec::new()),
        Some(Json::String(text)) => Ok(vec![("having", text.trim().to_owned())]),
        Some(Json::Array(_)) => text_items(value, "having"),
        Some(_) => Err(QueryError::new(
            "having",
            "must be a string or an array of strings, e.g. [\"count=gt.10\"]",
        )),
    }
}

/// The parts of a JSON request body: an object naming only `known` parts.
pub(crate) fn body_parts<'b>(
    body: &'b Json,
    known: &[&str],
) -> Result<&'b serde_json::Map<String, Json>, QueryError> {
    let Json::Object(parts) = body else {
        return Err(QueryError::new(
            "body",
            format!("expected a JSON object with any of: {}", known.join(", ")),
        ));
    };
    if let Some(unknown) = parts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(QueryError::new(
            unknown.as_str(),
            format!("unknown part; this request has: {}", known.join(", ")),
        ));
    }
    Ok(parts)
}

/// A body's `filter` part (no filter: every record).
pub(crate) fn filter_part(
    schema: &DatasetSchema,
    node: Option<&Json>,
) -> Result<Predicate, QueryError> {
    match node {
        Some(node) => {
            let mut budget = FILTER_MAX_NODES;
            Predicate::from_json(schema, node, "filter", 0, &mut budget)
        }
        None => Ok(Predicate::And(Vec::new())),
    }
}

impl Predicate {
    /// Reads a filter node at `path`, spending one unit of `budget` per operator and value.
    pub(crate) fn from_json(
        schema: &DatasetSchema,
        node: &Json,
        path: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Predicate, QueryError> {
        if depth > FILTER_MAX_DEPTH {
            return Err(QueryError::new(
                path,
                format!("the filter is nested deeper than {FILTER_MAX_DEPTH} levels"),
            ));
        }
        let spend = |budget: &mut usize, n: usize| {
            *budget = budget.checked_sub(n).ok_or_else(|| {
                QueryError::new(
                    path,
                    format!("the filter has more than {FILTER_MAX_NODES} operators and values"),
                )
            })?;
            Ok::<(), QueryError>(())
        };
        spend(budget, 1)?;
        let object = match node {
            Json::Object(object) if object.len() == 1 => object,
            _ => {
                return Err(QueryError::new(
                    path,
                    format!(
                        "expected an object with one operator, e.g. {{\"eq\": {{\"field\": 1}}}}; operators: {}",
                        body_operators()
                    ),
                ));
            }
        };
        let (op, operand) = object
            .iter()
            .next()
            .ok_or_else(|| QueryError::new(path, "expected an object with one operator"))?;
        let at = format!("{path}.{op}");
        match op.as_str() {
            "and" | "or" => {
                let Json::Array(items) = operand else {
                    return Err(QueryError::new(at, "expects an array of conditions"));
                };
                if items.is_empty() {
                    return Err(QueryError::new(at, "needs at least one condition"));
                }
                let terms = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Predicate::from_json(schema, item, &format!("{at}[{i}]"), depth + 1, budget)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if op == "and" {
                    Predicate::And(terms)
                } else {
                    Predicate::Or(terms)
                })
            }
            "not" => Ok(Predicate::Not(Box::new(Predicate::from_json(
                schema,
                operand,
                &at,
                depth + 1,
                budget,
            )?))),
            _ => {
                let operator = operator(op).ok_or_else(|| {
                    QueryError::new(
                        at.as_str(),
                        format!("unknown operator `{op}`; operators: {}", body_operators()),
                    )
                })?;
                match operand {
                    // `{"is_null": "field"}`: the shorthand for one field that is null
                    Json::String(name) if operator.operand == Operand::NullFlag => {
                        comparison_leaf(schema, &at, operator, name, &Json::Bool(true), budget)
                    }
                    Json::Object(fields) if !fields.is_empty() => {
                        spend(budget, fields.len())?;
                        all(fields.iter().map(|(name, value)| {
                            comparison_leaf(schema, &at, operator, name, value, budget)
                        }))
                    }
                    Json::Object(_) => Err(QueryError::new(at, "names no field")),
                    _ => Err(QueryError::new(
                        at,
                        format!(
                            "expects an object of field names and values, e.g. {{\"{op}\": {{\"field\": 1}}}}"
                        ),
                    )),
                }
            }
        }
    }
}

/// One leaf, or an `and` of several (an operator object naming several fields).
fn all(
    leaves: impl Iterator<Item = Result<Predicate, QueryError>>,
) -> Result<Predicate, QueryError> {
    let mut leaves = leaves.collect::<Result<Vec<_>, _>>()?;
    Ok(if leaves.len() == 1 {
        leaves.remove(0)
    } else {
        Predicate::And(leaves)
    })
}

/// The operators of a filter node: `and`, `or`, `not` and every field operator.
fn body_operators() -> String {
    format!("and, or, not, {}", operator_names())
}

/// One field's condition: `operand` is the JSON the operator takes for field `name`.
fn comparison_leaf(
    schema: &DatasetSchema,
    at: &str,
    operator: &'static Operator,
    name: &str,
    operand: &Json,
    budget: &mut usize,
) -> Result<Predicate, QueryError> {
    let op = operator.name;
    let field = field_at(schema, at, name)?;
    let ty = schema.fields[field].field_type;
    check_operator(at, op, name, ty)?;
    let error = |message: String| QueryError::new(at, format!("`{name}`: {message}"));
    let value = |json: &Json| {
        if json.is_null() {
            return Err(error(
                "null is not a value to compare with; use is_null".to_owned(),
            ));
        }
        Value::from_json(ty, json)
            .map_err(|e| error(format!("{json} is not a valid {ty}: {}", e.message)))
    };
    let list = |json: &Json, budget: &mut usize| -> Result<Vec<Value>, QueryError> {
        let Json::Array(items) = json else {
            return Err(error(format!("`{op}` takes an array of values")));
        };
        *budget = budget.checked_sub(items.len()).ok_or_else(|| {
            QueryError::new(
                at,
                format!("the filter has more than {FILTER_MAX_NODES} operators and values"),
            )
        })?;
        items.iter().map(value).collect()
    };
    let condition = match (operator.operand, operand) {
        (Operand::Value(comparison), _) => Condition::Compare(comparison, value(operand)?),
        (Operand::List | Operand::Range, _) => {
            Condition::of_values(operator.operand, list(operand, budget)?)
                .map_err(|why| error(format!("`{op}` {why}")))?
        }
        (Operand::Pattern { case_sensitive }, Json::String(pattern)) => {
            Condition::pattern(case_sensitive, pattern.clone())
        }
        (Operand::Pattern { .. }, _) => {
            return Err(error(format!(
                "`{op}` takes a pattern string (`%` any text, `_` one character)"
            )));
        }
        (Operand::NullWord, Json::String(word)) if word == "null" || word == "notnull" => {
            Condition::null_test(word == "null")
        }
        (Operand::NullWord, _) => {
            return Err(error(format!("`{op}` takes \"null\" or \"notnull\"")));
        }
        (Operand::NullFlag, Json::Bool(null)) => Condition::null_test(*null),
        (Operand::NullFlag, _) => {
            return Err(error(format!(
                "`{op}` takes true (is null) or false (is not null)"
            )));
        }
    };
    Ok(Predicate::Filter(Filter { field, condition }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Comparison, MetricFunction};
    use crate::testing::wells;
    use serde_json::json;

    fn parse(body: Json) -> Result<ReadPlan, QueryError> {
        parse_query_body(&wells(), &body, QueryLimits::default(), true)
    }

    #[test]
    fn parses_a_filter_tree() {
        let plan = parse(json!({
            "filter": {"or": [
                {"and": [{"eq": {"field_code": 3}}, {"between": {"oil": [1, 2.5]}}]},
                {"not": {"is_null": "note"}},
                {"in": {"name": ["a", "b"]}}
            ]},
            "select": ["name", "well_code"],
            "order": "period.desc",
            "limit": 5
        }))
        .unwrap();
        let ReadPlan::Records(q) = plan else {
            panic!("not records")
        };
        let leaf = |field, condition| Predicate::Filter(Filter { field, condition });
        assert_eq!(
            q.filter,
            Predicate::Or(vec![
                Predicate::And(vec![
                    leaf(1, Condition::Compare(Comparison::Eq, Value::Integer(3))),
                    leaf(4, Condition::Between(Value::Float(1.0), Value::Float(2.5))),
                ]),
                Predicate::Not(Box::new(leaf(5, Condition::IsNull))),
                leaf(
                    2,
                    Condition::In(vec![Value::String("a".into()), Value::String("b".into())])
                ),
            ])
        );
        assert_eq!(q.select, vec![2, 0]);
        assert_eq!(q.limit, Some(5));
        assert!(q.order[0].descending);
    }

    #[test]
    fn errors_name_the_path() {
        for (body, path, expected) in [
            (
                json!({"filter": {"and": [{"eq": {"well_code": 1}}, {"eq": {"name": "x"}}, {"gte": {"period": "soon"}}]}}),
                "filter.and[2].gte",
                "not a valid timestamp",
            ),
            (
                json!({"filter": {"or": [{"gte": {"ghost": 1}}]}}),
                "filter.or[0].gte",
                "unknown field `ghost`",
            ),
            (
                json!({"filter": {"not": {"like": {"well_code": "1%"}}}}),
                "filter.not.like",
                "applies to string fields only",
            ),
            (
                json!({"filter": {"near": {"well_code": 1}}}),
                "filter.near",
                "unknown operator `near`",
            ),
            (
                json!({"filter": {"and": [{"eq": {"well_code": 1}, "ne": {"well_code": 2}}]}}),
                "filter.and[0]",
                "one operator",
            ),
            (
                json!({"filter": {"between": {"oil": [1]}}}),
                "filter.between",
                "takes two values",
            ),
            (
                json!({"filter": {"gt": {"active": true}}}),
                "filter.gt",
                "does not apply to booleans",
            ),
            (
                json!({"select": ["name", 3]}),
                "select[1]",
                "must be a string",
            ),
            (
                json!({"select": ["nope"]}),
                "select",
                "unknown field `nope`",
            ),
            (json!({"limit": 0}), "limit", "from 1 to"),
            (json!({"limit": "ten"}), "limit", "positive integer"),
            (json!({"wat": 1}), "wat", "unknown part"),
            (json!({"cursor": 5}), "cursor", "next_cursor"),
            (
                json!({"metrics": ["count()", "sum(name)"]}),
                "metrics",
                "`sum` applies to integer and float",
            ),
            (
                json!({"metrics": ["count()"], "select": ["name"]}),
                "select",
                "does not apply to an aggregate",
            ),
        ] {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.parameter, path, "{body}: {}", err.message);
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }

    #[test]
    fn both_null_test_names_parse_alike() {
        let leaf = |condition| {
            Predicate::Filter(Filter {
                field: 5,
                condition,
            })
        };
        for (filter, expected) in [
            (json!({"is_null": "note"}), leaf(Condition::IsNull)),
            (
                json!({"is_null": {"note": false}}),
                leaf(Condition::IsNotNull),
            ),
            (json!({"is": {"note": "null"}}), leaf(Condition::IsNull)),
            (
                json!({"is": {"note": "notnull"}}),
                leaf(Condition::IsNotNull),
            ),
        ] {
            let Ok(ReadPlan::Records(q)) = parse(json!({ "filter": filter })) else {
                panic!("{filter} does not parse")
            };
            assert_eq!(q.filter, expected, "{filter}");
        }
        let err = parse(json!({"filter": {"is": {"note": true}}})).unwrap_err();
        assert_eq!(err.parameter, "filter.is");
        assert!(err.message.contains("\"notnull\""), "{}", err.message);
    }

    #[test]
    fn depth_and_size_are_capped() {
        let mut deep = json!({"eq": {"well_code": 1}});
        for _ in 0..=FILTER_MAX_DEPTH {
            deep = json!({ "not": deep });
        }
        let err = parse(json!({ "filter": deep })).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{}", err.message);
        let many: Vec<i64> = (0..FILTER_MAX_NODES as i64 + 1).collect();
        let err = parse(json!({"filter": {"in": {"well_code": many}}})).unwrap_err();
        assert_eq!(err.parameter, "filter.in");
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn aggregates_share_the_url_rules() {
        let ReadPlan::Aggregate(a) = parse(json!({
            "group_by": ["field_code"],
            "bucket": "period:year",
            "metrics": ["sum(oil)", "count()"],
            "order": ["sum_oil.desc"],
            "filter": {"gte": {"period": "2000-01-01T00:00:00Z"}}
        }))
        .unwrap() else {
            panic!("not an aggregate")
        };
        assert_eq!(a.metrics[0].function, MetricFunction::Sum);
        assert_eq!(a.group_by.len(), 2);
        assert_eq!(a.order, vec![(2, true)]);
    }
}
