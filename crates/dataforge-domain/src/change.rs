//! Changes to stored records: updates and deletes, of one record by key or of every record a
//! filter selects. Parsed here from URL parameters or a JSON body and checked against the schema,
//! so storage only ever sees a typed [`Mutation`] whose new values are valid.

use serde_json::Value as Json;

use crate::query::{
    Comparison, Condition, Filter, Predicate, QueryError, body_parts, filter_part, parse_filter,
};
use crate::schema::DatasetSchema;
use crate::validate::{Violation, Violations, check_value};
use crate::value::Value;

/// What a mutation does to the records it selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Delete,
    /// New values, by field position; every other field keeps its value.
    Update(Vec<(usize, Value)>),
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mutated {
    /// Records changed.
    pub changed: u64,
    /// For an update by key, the record as stored, when storage has it at hand (saves a read).
    pub record: Option<arrow_array::RecordBatch>,
}

impl Mutated {
    pub fn count(changed: u64) -> Self {
        Mutated {
            changed,
            record: None,
        }
    }
}

/// A change to every record that passes `filter`, all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub filter: Predicate,
    pub change: Change,
    /// Refuse, changing nothing, when more records than this would be touched.
    pub max_affected: Option<u64>,
    /// The key of the one record a change by key targets (the filter then selects it): storage
    /// may find it without a scan.
    pub key: Option<Vec<Value>>,
}

/// The filter of a change to many records and its guards, before the change itself is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub filter: Predicate,
    pub max_affected: Option<u64>,
}

impl Selection {
    pub fn with(self, change: Change) -> Mutation {
        Mutation {
            filter: self.filter,
            change,
            max_affected: self.max_affected,
            key: None,
        }
    }
}

/// The parameters a change by filter takes besides its filters.
pub const CHANGE_PARAMETERS: [&str; 2] = ["all", "max_affected"];

/// Parses the URL of `PATCH`/`DELETE .../records?<filters>`: filters (as for reads), `all=true`
/// (needed when there is no filter: a change to every record is never an accident) and
/// `max_affected=N`.
pub fn parse_selection_params(
    schema: &DatasetSchema,
    params: &[(String, String)],
) -> Result<Selection, QueryError> {
    let mut filters = Vec::new();
    let (mut all, mut max_affected) = (None, None);
    for (name, raw) in params {
        match name.as_str() {
            "all" => {
                let value = parse_bool(name, raw)?;
                if all.replace(value).is_some() {
                    return Err(QueryError::new(name, "given more than once"));
                }
            }
            "max_affected" => {
                if max_affected.replace(parse_count(name, raw)?).is_some() {
                    return Err(QueryError::new(name, "given more than once"));
                }
            }
            _ => filters.push(parse_filter(schema, name, raw)?),
        }
    }
    selection(Predicate::all(filters), all.unwrap_or(false), max_affected)
}

/// Parses the body of `POST .../delete` or `POST .../update`: `filter` (a filter tree as in
/// `POST .../query`), `all`, `max_affected`, and for an update `set` (returned as given, for
/// [`parse_set`]).
pub fn parse_selection_body<'b>(
    schema: &DatasetSchema,
    body: &'b Json,
    update: bool,
) -> Result<(Selection, Option<&'b Json>), QueryError> {
    let parts: &[&str] = if update {
        &["filter", "set", "all", "max_affected"]
    } else {
        &["filter", "all", "max_affected"]
    };
    let object = body_parts(body, parts)?;
    let present = |name: &str| object.get(name).filter(|v| !v.is_null());
    let filter = filter_part(schema, present("filter"))?;
    let all = match present("all") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(QueryError::new("all", "must be true or false")),
    };
    let max_affected = match present("max_affected") {
        None => None,
        Some(Json::Number(n)) => Some(parse_count("max_affected", &n.to_string())?),
        Some(_) => {
            return Err(QueryError::new(
                "max_affected",
                "must be a non-negative integer",
            ));
        }
    };
    let set = present("set");
    if update && set.is_none() {
        return Err(QueryError::new(
            "set",
            "an update needs `set`: an object of field values",
        ));
    }
    Ok((selection(filter, all, max_affected)?, set))
}

fn selection(
    filter: Predicate,
    all: bool,
    max_affected: Option<u64>,
) -> Result<Selection, QueryError> {
    if filter.is_always() && !all {
        return Err(QueryError::new(
            "all",
            "no filter selects the records to change; give a filter, or all=true to change every record",
        ));
    }
    Ok(Selection {
        filter,
        max_affected,
    })
}

fn parse_bool(name: &str, raw: &str) -> Result<bool, QueryError> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError::new(
            name,
            format!("must be `true` or `false`, found `{raw}`"),
        )),
    }
}

fn parse_count(name: &str, raw: &str) -> Result<u64, QueryError> {
    raw.parse::<u64>().map_err(|_| {
        QueryError::new(
            name,
            format!("must be a non-negative integer, found `{raw}`"),
        )
    })
}

/// A change to the one record with this key (values in key order).
pub fn by_key(schema: &DatasetSchema, key: Vec<Value>, change: Change) -> Mutation {
    Mutation {
        filter: key_filter(schema, key.clone()),
        change,
        max_affected: None,
        key: Some(key),
    }
}

/// The filter selecting the one record with this key (values in key order).
pub fn key_filter(schema: &DatasetSchema, key: Vec<Value>) -> Predicate {
    Predicate::all(
        schema
            .primary_key
            .iter()
            .zip(key)
            .map(|(&field, value)| Filter {
                field,
                condition: Condition::Compare(Comparison::Eq, value),
            })
            .collect(),
    )
}

/// Reads the new values of an update (a JSON object of fields), each checked as a write would
/// check it: the field exists and is not part of the key, the value has the field's type, a
/// required field is not set to null, and the field's rules hold. Every problem is reported (as
/// row 1), so a client can fix the whole request at once.
pub fn parse_set(schema: &DatasetSchema, set: &Json) -> Result<Vec<(usize, Value)>, Violations> {
    let mut violations = Violations::default();
    let mut report = |field: Option<&str>, code: &'static str, message: String| {
        violations.push(Violation {
            row: 1,
            field: field.map(str::to_owned),
            code,
            message,
        })
    };
    let Json::Object(object) = set else {
        report(
            None,
            "not_an_object",
            "expected a JSON object of field values".into(),
        );
        return Err(violations);
    };
    let mut values = Vec::with_capacity(object.len());
    for (name, json) in object {
        let Some(position) = schema.field_index(name) else {
            report(
                Some(name),
                "unknown_field",
                format!(
                    "{} has no field `{name}`; its fields: {}",
                    schema.name,
                    schema.field_names()
                ),
            );
            continue;
        };
        let field = &schema.fields[position];
        if schema.primary_key.contains(&position) {
            report(
                Some(name),
                "key_field",
                "is part of the primary key and cannot be changed; delete the record and insert it under the new key".into(),
            );
            continue;
        }
        match Value::from_json(field.field_type, json) {
            Err(e) => report(Some(name), e.code, e.message),
            Ok(Value::Null) if field.required => {
                report(Some(name), "required", "a value is required".into())
            }
            Ok(value) => match check_value(&value, &field.constraints) {
                Ok(()) => values.push((position, value)),
                Err(broken) => report(Some(name), broken.code, broken.message),
            },
        }
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    if values.is_empty() {
        let mut violations = Violations::default();
        violations.push(Violation {
            row: 1,
            field: None,
            code: "empty",
            message: "names no field to change".into(),
        });
        return Err(violations);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::wells;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_selection_needs_a_filter_or_all() {
        let schema = wells();
        let refused = parse_selection_params(&schema, &[]).unwrap_err();
        assert_eq!(refused.parameter, "all");
        let all = parse_selection_params(&schema, &pairs(&[("all", "true")])).unwrap();
        assert!(all.filter.is_always());
        let some = parse_selection_params(
            &schema,
            &pairs(&[("field_code", "eq.3"), ("max_affected", "10")]),
        )
        .unwrap();
        assert_eq!(some.max_affected, Some(10));
        assert!(!some.filter.is_always());
        for (name, raw) in [("max_affected", "-1"), ("all", "yes"), ("nope", "eq.1")] {
            let e = parse_selection_params(&schema, &pairs(&[(name, raw), ("all", "true")]))
                .unwrap_err();
            assert_eq!(e.parameter, name);
        }
    }

    #[test]
    fn a_body_names_its_mistakes() {
        let schema = wells();
        let body = json!({"filter": {"lt": {"oil": 5}}, "set": {"oil": 1}, "max_affected": 3});
        let (selection, set) = parse_selection_body(&schema, &body, true).unwrap();
        assert_eq!(selection.max_affected, Some(3));
        assert_eq!(set, Some(&json!({"oil": 1})));
        let e = parse_selection_body(&schema, &json!({"filter": {"lt": {"oil": 5}}}), true)
            .unwrap_err();
        assert_eq!(e.parameter, "set");
        let e = parse_selection_body(&schema, &json!({"set": {"oil": 1}}), false).unwrap_err();
        assert_eq!(e.parameter, "set");
        let e = parse_selection_body(&schema, &json!({"filter": {"gt": {"nope": 1}}}), false)
            .unwrap_err();
        assert_eq!(e.parameter, "filter.gt");
        let e = parse_selection_body(&schema, &json!({}), false).unwrap_err();
        assert_eq!(e.parameter, "all");
    }

    #[test]
    fn new_values_are_checked_like_a_write() {
        let schema = wells();
        let set = parse_set(&schema, &json!({"oil": 2.5, "note": null})).unwrap();
        assert_eq!(set.len(), 2);
        let refused = parse_set(
            &schema,
            &json!({"well_code": 2, "oil": -1, "nope": 1, "name": 7}),
        )
        .unwrap_err();
        let codes: Vec<(String, &str)> = refused
            .into_listed()
            .into_iter()
            .map(|v| (v.field.unwrap_or_default(), v.code))
            .collect();
        for expected in [
            ("well_code", "key_field"),
            ("oil", "min"),
            ("nope", "unknown_field"),
            ("name", "type"),
        ] {
            assert!(
                codes.contains(&(expected.0.to_owned(), expected.1)),
                "{expected:?} in {codes:?}"
            );
        }
        assert_eq!(
            parse_set(&schema, &json!({})).unwrap_err().into_listed()[0].code,
            "empty"
        );
    }
}
