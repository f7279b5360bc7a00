//! Parsing the read API's URL parameters (`field=op.value`, `select`, `order`, `limit`, `cursor`)
//! and primary-key path segments into the query model.

use super::cursor::Cursor;
use super::{
    Condition, Filter, Operand, Predicate, QueryError, RecordQuery, SortKey, check_operator,
    field_at, operator_names,
};
use crate::identifier::RESERVED_PARAMETERS;
use crate::schema::DatasetSchema;
use crate::value::{FieldType, Value};

/// Page-size bounds, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub default_limit: usize,
    pub max_limit: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            default_limit: 100,
            max_limit: 10_000,
        }
    }
}

/// Parses the parameters of a records listing. A `paged` listing (JSON) has a page size of at most
/// `limits.max_limit` and is always ordered (by the primary key last); a streamed one returns every
/// matching row unless `limit` says otherwise, in storage order unless `order` says otherwise.
pub fn parse_list_params(
    schema: &DatasetSchema,
    params: &[(String, String)],
    limits: QueryLimits,
    paged: bool,
) -> Result<RecordQuery, QueryError> {
    let mut filters = Vec::new();
    let (mut select, mut order, mut limit, mut cursor) = (None, None, None, None);
    for (name, raw) in params {
        let slot = match name.as_str() {
            "select" => &mut select,
            "order" => &mut order,
            "limit" => &mut limit,
            "cursor" => &mut cursor,
            _ => {
                filters.push(parse_filter(schema, name, raw)?);
                continue;
            }
        };
        if slot.replace(raw.as_str()).is_some() {
            return Err(QueryError::new(name, "given more than once"));
        }
    }
    let select = match select {
        Some(raw) => parse_select(schema, raw, "select")?,
        None => (0..schema.fields.len()).collect(),
    };
    // every read has a total order, the primary key last: a stream asked for none comes in key
    // order, so two exports of the same data are identical
    let order = parse_order(schema, order.unwrap_or(""), "order")?;
    let limit = parse_limit("limit", limit, limits, paged)?;
    let after = cursor
        .map(|token| Cursor::decode(schema, &order, token))
        .transpose()?
        .map(|c| c.values);
    Ok(RecordQuery {
        filter: Predicate::all(filters),
        select,
        order,
        limit,
        after,
    })
}

/// Parses a page size: `None` when not given for a streamed answer, the default for a paged one.
pub(crate) fn parse_limit(
    at: &str,
    raw: Option<&str>,
    limits: QueryLimits,
    paged: bool,
) -> Result<Option<usize>, QueryError> {
    let Some(raw) = raw else {
        return Ok(paged.then_some(limits.default_limit));
    };
    let max = if paged { limits.max_limit } else { usize::MAX };
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ if paged => Err(QueryError::new(
            at,
            format!("must be an integer from 1 to {max}, found `{raw}`"),
        )),
        _ => Err(QueryError::new(
            at,
            format!("must be a positive integer, found `{raw}`"),
        )),
    }
}

/// Parses the parameters of a count: filters, and `exact=false` for an estimate.
pub fn parse_count_params(
    schema: &DatasetSchema,
    params: &[(String, String)],
) -> Result<(Predicate, bool), QueryError> {
    let mut filters = Vec::new();
    let mut exact = None;
    for (name, raw) in params {
        match name.as_str() {
            "exact" => {
                let value = match raw.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(QueryError::new(
                            name,
                            format!("must be `true` or `false`, found `{raw}`"),
                        ));
                    }
                };
                if exact.replace(value).is_some() {
                    return Err(QueryError::new(name, "given more than once"));
                }
            }
            _ if RESERVED_PARAMETERS.contains(&name.as_str()) => {
                return Err(QueryError::new(
                    name,
                    "does not apply to a count; only filters and `exact` do",
                ));
            }
            _ => filters.push(parse_filter(schema, name, raw)?),
        }
    }
    Ok((Predicate::all(filters), exact.unwrap_or(true)))
}

/// Parses the URL filters among `params`, leaving out the names in `skip`.
pub(crate) fn parse_filters(
    schema: &DatasetSchema,
    params: &[(String, String)],
    skip: &[&str],
) -> Result<Vec<Filter>, QueryError> {
    params
        .iter()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .map(|(name, raw)| parse_filter(schema, name, raw))
        .collect()
}

/// Parses primary-key path segments, in key order.
pub fn parse_key(schema: &DatasetSchema, segments: &[&str]) -> Result<Vec<Value>, QueryError> {
    let names = || {
        schema
            .key_fields()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join("/")
    };
    if segments.len() != schema.primary_key.len() {
        return Err(QueryError::new(
            "key",
            format!(
                "{} has a key of {} part(s) ({}), but the path gives {}",
                schema.name,
                schema.primary_key.len(),
                names(),
                segments.len()
            ),
        ));
    }
    schema
        .key_fields()
        .zip(segments)
        .map(|(field, segment)| {
            Value::parse_text(field.field_type, segment).map_err(|e| {
                QueryError::new("key", format!("key field `{}`: {}", field.name, e.message))
            })
        })
        .collect()
}

pub(crate) fn parse_filter(
    schema: &DatasetSchema,
    name: &str,
    raw: &str,
) -> Result<Filter, QueryError> {
    let Some(field_index) = schema.field_index(name) else {
        return Err(QueryError::new(
            name,
            format!(
                "unknown field or parameter `{name}`; {} has fields: {}",
                schema.name,
                schema.field_names()
            ),
        ));
    };
    let ty = schema.fields[field_index].field_type;
    Ok(Filter {
        field: field_index,
        condition: parse_condition(name, name, ty, raw)?,
    })
}

/// Parses `operator.operand` on a column `name` of type `ty` (a field, or an aggregate's metric),
/// with errors at parameter `at`.
pub(crate) fn parse_condition(
    at: &str,
    name: &str,
    ty: FieldType,
    raw: &str,
) -> Result<Condition, QueryError> {
    let error = |message: String| QueryError::new(at, message);
    let (op, operand) = raw.split_once('.').ok_or_else(|| {
        error(format!(
            "expected `operator.value` (e.g. `eq.42`), found `{raw}`; operators: {}",
            operator_names()
        ))
    })?;
    let operator = check_operator(at, op, name, ty)?;
    let value = |text: &str| {
        Value::parse_text(ty, text)
            .map_err(|e| error(format!("`{text}` is not a valid {ty}: {}", e.message)))
    };
    let list = || -> Result<Vec<Value>, QueryError> {
        let inner = operand
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| {
                error(format!(
                    "`{op}` takes a list in parentheses, e.g. `{op}.(1,2)`, found `{operand}`"
                ))
            })?;
        split_list(inner)
            .map_err(error)?
            .iter()
            .map(|item| value(item))
            .collect()
    };
    let null_test = |null: &str, not_null: &str| {
        if operand == null || operand == not_null {
            Ok(Condition::null_test(operand == null))
        } else {
            Err(error(format!(
                "`{op}` takes `{null}` or `{not_null}`, found `{operand}`"
            )))
        }
    };
    match operator.operand {
        Operand::Value(comparison) => Ok(Condition::Compare(comparison, value(operand)?)),
        Operand::List | Operand::Range => {
            Condition::of_values(operator.operand, list()?).map_err(|why| {
                error(format!(
                    "`{op}` {why}, e.g. `{op}.(1,9)`, found `{operand}`"
                ))
            })
        }
        Operand::Pattern { case_sensitive } => Ok(Condition::pattern(
            case_sensitive,
            operand.replace('*', "%"),
        )),
        Operand::NullWord => null_test("null", "notnull"),
        Operand::NullFlag => null_test("true", "false"),
    }
}

/// Splits `a,b,"c,d"` into items; double quotes protect commas, `\"` is a quote inside quotes.
fn split_list(text: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    if text.is_empty() {
        return Ok(items);
    }
    let mut chars = text.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err("unterminated quote in a list".to_owned()),
                }
            }
            match chars.next() {
                None => {
                    items.push(item);
                    return Ok(items);
                }
                Some(',') => {}
                Some(c) => {
                    return Err(format!("unexpected `{c}` after a quoted item in a list"));
                }
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some(c) => item.push(c),
                    None => {
                        items.push(item);
                        return Ok(items);
                    }
                }
            }
        }
        items.push(item);
    }
}

pub(crate) fn parse_select(
    schema: &DatasetSchema,
    raw: &str,
    at: &str,
) -> Result<Vec<usize>, QueryError> {
    let mut select = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let index = field_at(schema, at, name)?;
        if select.contains(&index) {
            return Err(QueryError::new(
                at,
                format!("field `{name}` is listed twice"),
            ));
        }
        select.push(index);
    }
    Ok(select)
}

pub(crate) fn parse_order(
    schema: &DatasetSchema,
    raw: &str,
    at: &str,
) -> Result<Vec<SortKey>, QueryError> {
    let mut order: Vec<SortKey> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, direction) = item.split_once('.').unwrap_or((item, "asc"));
        let descending = match direction {
            "asc" => false,
            "desc" => true,
            _ => {
                return Err(QueryError::new(
                    at,
                    format!("direction must be `asc` or `desc`, found `{direction}` in `{item}`"),
                ));
            }
        };
        let field = field_at(schema, at, name)?;
        if schema.fields[field].field_type == FieldType::Json {
            return Err(QueryError::new(
                at,
                format!("field `{name}` is json and cannot be sorted"),
            ));
        }
        if order.iter().any(|k| k.field == field) {
            return Err(QueryError::new(
                at,
                format!("field `{name}` is listed twice"),
            ));
        }
        order.push(SortKey { field, descending });
    }
    for &field in &schema.primary_key {
        if !order.iter().any(|k| k.field == field) {
            order.push(SortKey {
                field,
                descending: false,
            });
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Comparison;
    use crate::testing::wells;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = wells();
        let q = parse_list_params(
            &s,
            &params(&[
                ("well_code", "eq.7"),
                ("field_code", "in.(1,2,3)"),
                ("oil", "gte.1.5"),
                ("name", "ilike.*north*"),
                ("period", "lt.2020-01-01"),
                ("note", "is.null"),
                ("name", "like.A_%"),
                ("well_code", "ne.8"),
                ("well_code", "between.(3,9)"),
            ]),
            QueryLimits::default(),
            true,
        )
        .unwrap();
        let Predicate::And(terms) = &q.filter else {
            panic!("URL filters make an `and`: {:?}", q.filter)
        };
        let filters: Vec<&Filter> = terms
            .iter()
            .map(|t| match t {
                Predicate::Filter(f) => f,
                other => panic!("not a leaf: {other:?}"),
            })
            .collect();
        assert_eq!(filters.len(), 9);
        assert_eq!(
            filters[0].condition,
            Condition::Compare(Comparison::Eq, Value::Integer(7))
        );
        assert_eq!(
            filters[1].condition,
            Condition::In(vec![
                Value::Integer(1),
                Value::Integer(2),
                Value::Integer(3)
            ])
        );
        assert_eq!(filters[3].condition, Condition::ILike("%north%".into()));
        assert_eq!(
            filters[4].condition,
            Condition::Compare(Comparison::Lt, Value::Timestamp(1_577_836_800_000_000))
        );
        assert_eq!(filters[5].condition, Condition::IsNull);
        assert_eq!(
            filters[8].condition,
            Condition::Between(Value::Integer(3), Value::Integer(9))
        );
        assert_eq!(q.limit, Some(100));
        let streamed = parse_list_params(&s, &[], QueryLimits::default(), false).unwrap();
        assert_eq!(streamed.limit, None);
        assert_eq!(
            streamed.order,
            vec![SortKey {
                field: s.primary_key[0],
                descending: false
            }],
            "an unordered stream comes in key order"
        );
    }

    #[test]
    fn filter_errors_name_the_parameter() {
        let s = wells();
        let cases = [
            ("nope", "eq.1", "unknown field or parameter `nope`"),
            ("well_code", "7", "expected `operator.value`"),
            ("well_code", "eq.seven", "`seven` is not a valid integer"),
            ("well_code", "near.7", "unknown operator `near`"),
            ("well_code", "like.7", "applies to string fields only"),
            ("well_code", "in.1,2", "`in` takes a list in parentheses"),
            ("well_code", "in.()", "at least one value"),
            ("well_code", "between.(1)", "`between` takes two values"),
            ("note", "is.empty", "`is` takes `null` or `notnull`"),
            ("active", "gt.true", "does not apply to booleans"),
            ("extra", "eq.{}", "does not apply to json fields"),
        ];
        for (name, raw, expected) in cases {
            let err = parse_list_params(&s, &params(&[(name, raw)]), QueryLimits::default(), true)
                .unwrap_err();
            assert_eq!(err.parameter, name, "{name}={raw}");
            assert!(
                err.message.contains(expected),
                "{name}={raw}: {}",
                err.message
            );
        }
    }

    #[test]
    fn both_null_test_names_parse_alike() {
        let s = wells();
        for (raw, expected) in [
            ("is.null", Condition::IsNull),
            ("is.notnull", Condition::IsNotNull),
            ("is_null.true", Condition::IsNull),
            ("is_null.false", Condition::IsNotNull),
        ] {
            assert_eq!(
                parse_filter(&s, "extra", raw).map(|f| f.condition),
                Ok(expected),
                "{raw}"
            );
        }
        let err = parse_filter(&s, "note", "is_null.null").unwrap_err();
        assert!(
            err.message.contains("takes `true` or `false`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn in_lists_accept_quoted_items() {
        assert_eq!(split_list(r#"a,"b,c",d"#).unwrap(), vec!["a", "b,c", "d"]);
        assert_eq!(split_list(r#""say \"hi\"""#).unwrap(), vec![r#"say "hi""#]);
        assert!(split_list(r#""open"#).is_err());
    }

    #[test]
    fn order_appends_the_primary_key() {
        let s = wells();
        let q = parse_list_params(
            &s,
            &params(&[("order", "period.desc,name")]),
            QueryLimits::default(),
            true,
        )
        .unwrap();
        let names: Vec<_> = q
            .order
            .iter()
            .map(|k| (s.fields[k.field].name.as_str(), k.descending))
            .collect();
        assert_eq!(
            names,
            vec![("period", true), ("name", false), ("well_code", false)]
        );
        for (raw, expected) in [
            ("period.up", "direction must be"),
            ("nope", "unknown field"),
            ("name,name", "twice"),
            ("extra", "cannot be sorted"),
        ] {
            let err =
                parse_list_params(&s, &params(&[("order", raw)]), QueryLimits::default(), true)
                    .unwrap_err();
            assert_eq!(err.parameter, "order");
            assert!(err.message.contains(expected), "{raw}: {}", err.message);
        }
    }

    #[test]
    fn select_and_limit_are_checked() {
        let s = wells();
        let q = parse_list_params(
            &s,
            &params(&[("select", "name,well_code"), ("limit", "10")]),
            QueryLimits::default(),
            true,
        )
        .unwrap();
        assert_eq!(q.select, vec![s.field_index("name").unwrap(), 0]);
        assert_eq!(q.limit, Some(10));
        for (param, raw) in [
            ("select", "name,ghost"),
            ("select", "name,name"),
            ("limit", "0"),
            ("limit", "10001"),
            ("limit", "ten"),
        ] {
            let err = parse_list_params(&s, &params(&[(param, raw)]), QueryLimits::default(), true)
                .unwrap_err();
            assert_eq!(err.parameter, param, "{param}={raw}");
        }
        let twice = parse_list_params(
            &s,
            &params(&[("limit", "1"), ("limit", "2")]),
            QueryLimits::default(),
            true,
        )
        .unwrap_err();
        assert_eq!(twice.message, "given more than once");
    }

    #[test]
    fn cursors_round_trip_and_are_checked() {
        let s = wells();
        let order = parse_order(&s, "period.desc", "order").unwrap();
        let values = vec![Value::Timestamp(1_000_000), Value::Integer(5)];
        let token = Cursor::encode(&s, &order, &values);
        let q = parse_list_params(
            &s,
            &params(&[("order", "period.desc"), ("cursor", &token)]),
            QueryLimits::default(),
            true,
        )
        .unwrap();
        assert_eq!(q.after, Some(values));
        let other_order = parse_list_params(
            &s,
            &params(&[("cursor", &token)]),
            QueryLimits::default(),
            true,
        )
        .unwrap_err();
        assert!(
            other_order.message.contains("made for order"),
            "{}",
            other_order.message
        );
        let garbage = parse_list_params(
            &s,
            &params(&[("cursor", "%%%")]),
            QueryLimits::default(),
            true,
        )
        .unwrap_err();
        assert_eq!(garbage.parameter, "cursor");
    }

    #[test]
    fn count_takes_filters_only() {
        let s = wells();
        assert_eq!(
            parse_count_params(&s, &params(&[("well_code", "gt.1"), ("exact", "false")])),
            Ok((
                Predicate::all(vec![Filter {
                    field: 0,
                    condition: Condition::Compare(Comparison::Gt, Value::Integer(1))
                }]),
                false
            ))
        );
        assert_eq!(
            parse_count_params(&s, &params(&[("exact", "maybe")]))
                .unwrap_err()
                .parameter,
            "exact"
        );
        assert_eq!(
            parse_count_params(&s, &params(&[("limit", "1")]))
                .unwrap_err()
                .parameter,
            "limit"
        );
    }

    #[test]
    fn keys_parse_in_key_order() {
        let s = wells();
        assert_eq!(parse_key(&s, &["42"]).unwrap(), vec![Value::Integer(42)]);
        assert!(
            parse_key(&s, &["42", "1"])
                .unwrap_err()
                .message
                .contains("key of 1 part")
        );
        assert!(
            parse_key(&s, &["x"])
                .unwrap_err()
                .message
                .contains("key field `well_code`")
        );
    }
}
