//! Checks dataset declarations and turns them into [`DatasetSchema`]s, collecting every problem
//! rather than stopping at the first, so one `dataforge check` run shows all there is to fix.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::{
    Catalog, Constraints, DatasetDraft, DatasetSchema, FieldDraft, FieldSchema, Located, Pattern,
};
use crate::identifier::{check_field_name, check_identifier};
use crate::validate::check_value;
use crate::value::{FieldType, Value};

/// One thing wrong in a schema declaration, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.origin, line, self.message)?,
            None => write!(f, "{}: {}", self.origin, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects problems for one declaration.
struct Problems<'a> {
    origin: &'a str,
    found: Vec<SchemaProblem>,
}

impl Problems<'_> {
    fn add(&mut self, line: Option<usize>, message: impl Into<String>, hint: Option<String>) {
        self.found.push(SchemaProblem {
            origin: self.origin.to_owned(),
            line,
            message: message.into(),
            hint,
        });
    }
}

const NAME_HINT: &str = "use lowercase snake_case of at most 63 characters that is not an SQL keyword, e.g. `well_code`";

/// Checks every declaration and builds the catalog, or returns every problem found.
pub fn build_catalog(drafts: &[DatasetDraft]) -> Result<Catalog, Vec<SchemaProblem>> {
    let mut problems = Vec::new();
    let mut datasets: BTreeMap<String, (Arc<DatasetSchema>, String, Option<usize>)> =
        BTreeMap::new();
    for draft in drafts {
        let mut found = Problems {
            origin: &draft.origin,
            found: Vec::new(),
        };
        let built = build_dataset(draft, &mut found);
        problems.extend(found.found);
        let Some(schema) = built else { continue };
        if let Some((_, origin, line)) = datasets.get(&schema.name) {
            let first = match line {
                Some(line) => format!("{origin}:{line}"),
                None => origin.clone(),
            };
            problems.push(SchemaProblem {
                origin: draft.origin.clone(),
                line: draft.name.as_ref().and_then(|n| n.line),
                message: format!("dataset `{}` is declared twice", schema.name),
                hint: Some(format!(
                    "it is first declared at {first}; rename or remove one"
                )),
            });
            continue;
        }
        let line = draft.name.as_ref().and_then(|n| n.line);
        datasets.insert(
            schema.name.clone(),
            (Arc::new(schema), draft.origin.clone(), line),
        );
    }
    if problems.is_empty() {
        Ok(Catalog {
            datasets: datasets.into_iter().map(|(k, (v, _, _))| (k, v)).collect(),
        })
    } else {
        Err(problems)
    }
}

fn build_dataset(draft: &DatasetDraft, problems: &mut Problems<'_>) -> Option<DatasetSchema> {
    let name = match &draft.name {
        None => {
            problems.add(
                draft.line,
                "dataset has no `name`",
                Some("add `name = \"my_dataset\"`".into()),
            );
            None
        }
        Some(Located { value, line }) => match check_identifier(value) {
            Ok(()) => Some(value.clone()),
            Err(e) => {
                problems.add(
                    *line,
                    format!("bad dataset name: {e}"),
                    Some(NAME_HINT.into()),
                );
                None
            }
        },
    };
    let what = name.clone().unwrap_or_else(|| "dataset".into());

    if draft.fields.is_empty() {
        problems.add(
            draft.line,
            format!("{what} declares no fields"),
            Some("add `[[datasets.fields]]` tables".into()),
        );
    }
    let mut fields = Vec::new();
    let mut seen: BTreeMap<String, Option<usize>> = BTreeMap::new();
    let mut fields_ok = true;
    for field in &draft.fields {
        if let Some(Located { value, line }) = &field.name {
            if let Some(first) = seen.get(value) {
                let hint = first.map(|l| format!("`{value}` is first declared on line {l}"));
                problems.add(*line, format!("duplicate field `{value}` in {what}"), hint);
                fields_ok = false;
                continue;
            }
            seen.insert(value.clone(), *line);
        }
        match build_field(field, problems) {
            Some(f) => fields.push(f),
            None => fields_ok = false,
        }
    }

    let field_position = |name: &str| fields.iter().position(|f: &FieldSchema| f.name == name);
    let declared = || {
        fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut key_ok = true;
    let mut primary_key = Vec::new();
    match &draft.primary_key {
        None => {
            problems.add(
                draft.line,
                format!("{what} has no `primary_key`"),
                Some("add `primary_key = [\"id\"]`, listing one or more fields".into()),
            );
            key_ok = false;
        }
        Some(Located { value, line }) if value.is_empty() => {
            problems.add(
                *line,
                format!("{what} has an empty `primary_key`"),
                Some("list one or more fields".into()),
            );
            key_ok = false;
        }
        Some(Located { value, line }) => {
            let mut listed = HashSet::new();
            for key in value {
                if !listed.insert(key) {
                    problems.add(
                        *line,
                        format!("primary key field `{key}` is listed twice"),
                        None,
                    );
                    key_ok = false;
                    continue;
                }
                match field_position(key) {
                    Some(i) if fields[i].field_type == FieldType::Json => {
                        problems.add(
                            *line,
                            format!(
                                "primary key field `{key}` has type json, which cannot be a key"
                            ),
                            Some("use string, integer, date or timestamp fields for keys".into()),
                        );
                        key_ok = false;
                    }
                    Some(i) => primary_key.push(i),
                    None if fields_ok => {
                        problems.add(
                            *line,
                            format!("primary key field `{key}` is not a field of {what}"),
                            Some(format!("declared fields: {}", declared())),
                        );
                        key_ok = false;
                    }
                    None => key_ok = false,
                }
            }
        }
    }

    let mut indexes = Vec::new();
    for Located { value, line } in &draft.indexes {
        if value.is_empty() {
            problems.add(*line, format!("an index of {what} lists no fields"), None);
            continue;
        }
        let mut index = Vec::new();
        for name in value {
            match field_position(name) {
                Some(i) => index.push(i),
                None if fields_ok => problems.add(
                    *line,
                    format!("index field `{name}` is not a field of {what}"),
                    Some(format!("declared fields: {}", declared())),
                ),
                None => {}
            }
        }
        if index.len() == value.len() {
            indexes.push(index);
        }
    }

    let mut cluster_ok = true;
    let mut cluster_by = Vec::new();
    if let Some(Located { value, line }) = &draft.cluster_by {
        if value.is_empty() {
            problems.add(
                *line,
                format!("`cluster_by` of {what} lists no fields"),
                None,
            );
            cluster_ok = false;
        }
        for name in value {
            match field_position(name) {
                Some(i) if fields[i].field_type == FieldType::Json => {
                    problems.add(
                        *line,
                        format!("cluster_by field `{name}` has type json, which has no order"),
                        None,
                    );
                    cluster_ok = false;
                }
                Some(i) => cluster_by.push(i),
                None => {
                    if fields_ok {
                        problems.add(
                            *line,
                            format!("cluster_by field `{name}` is not a field of {what}"),
                            Some(format!("declared fields: {}", declared())),
                        );
                    }
                    cluster_ok = false;
                }
            }
        }
    }

    let name = name?;
    if !fields_ok
        || !key_ok
        || !cluster_ok
        || fields.is_empty()
        || indexes.len() != draft.indexes.len()
    {
        return None;
    }
    for &i in &primary_key {
        fields[i].required = true;
    }
    Some(DatasetSchema::new(
        name,
        draft.description.clone().unwrap_or_default(),
        fields,
        primary_key,
        indexes,
        cluster_by,
    ))
}

fn build_field(draft: &FieldDraft, problems: &mut Problems<'_>) -> Option<FieldSchema> {
    let before = problems.found.len();
    let name = match &draft.name {
        None => {
            problems.add(
                draft.line,
                "field has no `name`",
                Some("add `name = \"my_field\"`".into()),
            );
            None
        }
        Some(Located { value, line }) => match check_field_name(value) {
            Ok(()) => Some(value.clone()),
            Err(e) => {
                problems.add(
                    *line,
                    format!("bad field name: {e}"),
                    Some(NAME_HINT.into()),
                );
                None
            }
        },
    };
    let label = name
        .clone()
        .map(|n| format!("field `{n}`"))
        .unwrap_or_else(|| "field".into());
    let type_names = || FieldType::ALL.map(|t| t.name()).join(", ");
    let field_type = match &draft.field_type {
        None => {
            problems.add(
                draft.line,
                format!("{label} has no `type`"),
                Some(format!("one of: {}", type_names())),
            );
            None
        }
        Some(Located { value, line }) => {
            let found = FieldType::from_name(value);
            if found.is_none() {
                problems.add(
                    *line,
                    format!("{label} has unknown type `{value}`"),
                    Some(format!("one of: {}", type_names())),
                );
            }
            found
        }
    };
    let ty = field_type?;

    let mut read_bound = |bound: &Option<Located<serde_json::Value>>, key: &str| -> Option<Value> {
        let Located { value, line } = bound.as_ref()?;
        if !ty.is_ordered() {
            problems.add(
                *line,
                format!("{label}: `{key}` does not apply to type {ty}"),
                Some("`min` and `max` apply to integer, float, date and timestamp fields".into()),
            );
            return None;
        }
        match Value::from_json(ty, value) {
            Ok(v) if !v.is_null() => Some(v),
            Ok(_) => None,
            Err(e) => {
                problems.add(
                    *line,
                    format!("{label}: `{key}` is not a valid {ty}: {e}"),
                    None,
                );
                None
            }
        }
    };
    let min = read_bound(&draft.min, "min");
    let max = read_bound(&draft.max, "max");
    if let (Some(lo), Some(hi)) = (&min, &max)
        && lo.compare(hi) == Some(std::cmp::Ordering::Greater)
    {
        let line = draft.min.as_ref().and_then(|m| m.line);
        problems.add(
            line,
            format!("{label}: `min` ({lo}) is greater than `max` ({hi})"),
            Some("swap them or fix one".into()),
        );
    }

    let one_of = draft.one_of.as_ref().and_then(|Located { value, line }| {
        if ty == FieldType::Json {
            problems.add(
                *line,
                format!("{label}: `one_of` does not apply to type json"),
                None,
            );
            return None;
        }
        if value.is_empty() {
            problems.add(
                *line,
                format!("{label}: `one_of` is empty, so no value could ever be stored"),
                Some("list the allowed values".into()),
            );
            return None;
        }
        let mut allowed = Vec::new();
        for (i, item) in value.iter().enumerate() {
            match Value::from_json(ty, item) {
                Ok(v) if !v.is_null() => allowed.push(v),
                Ok(_) => problems.add(
                    *line,
                    format!("{label}: `one_of` item {} is null", i + 1),
                    Some("leave `required = false` to allow nulls".into()),
                ),
                Err(e) => problems.add(
                    *line,
                    format!("{label}: `one_of` item {} is not a valid {ty}: {e}", i + 1),
                    None,
                ),
            }
        }
        Some(allowed)
    });

    let pattern = draft.pattern.as_ref().and_then(|Located { value, line }| {
        if !ty.is_text() {
            problems.add(
                *line,
                format!("{label}: `pattern` does not apply to type {ty}"),
                Some("`pattern` applies to string fields".into()),
            );
            return None;
        }
        match Regex::new(value) {
            Ok(regex) => Some(Pattern {
                source: value.clone(),
                regex,
            }),
            Err(e) => {
                let detail = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                problems.add(
                    *line,
                    format!("{label}: invalid regex `{value}`: {detail}"),
                    Some("patterns use Rust regex syntax (https://docs.rs/regex)".into()),
                );
                None
            }
        }
    });

    let max_length = draft
        .max_length
        .as_ref()
        .and_then(|Located { value, line }| {
            if !ty.is_text() {
                problems.add(
                    *line,
                    format!("{label}: `max_length` does not apply to type {ty}"),
                    Some("`max_length` applies to string fields".into()),
                );
                return None;
            }
            match u64::try_from(*value) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    problems.add(
                        *line,
                        format!("{label}: `max_length` must be a positive integer, found {value}"),
                        None,
                    );
                    None
                }
            }
        });

    let constraints = Constraints {
        min,
        max,
        one_of,
        pattern,
        max_length,
    };
    let default =
        draft.default.as_ref().and_then(|Located { value, line }| {
            match Value::from_json(ty, value) {
                Ok(v) if v.is_null() => None,
                Ok(v) => match check_value(&v, &constraints) {
                    Ok(()) => Some(v),
                    Err(e) => {
                        problems.add(
                            *line,
                            format!(
                                "{label}: `default` breaks the field's own rule: {}",
                                e.message
                            ),
                            None,
                        );
                        None
                    }
                },
                Err(e) => {
                    problems.add(
                        *line,
                        format!("{label}: `default` is not a valid {ty}: {e}"),
                        None,
                    );
                    None
                }
            }
        });

    let renamed_from = draft
        .renamed_from
        .as_ref()
        .and_then(|Located { value, line }| match check_field_name(value) {
            Ok(()) if Some(value) == name.as_ref() => {
                problems.add(
                    *line,
                    format!("{label}: `renamed_from` names the field itself"),
                    Some("give the field's previous name, or remove `renamed_from`".into()),
                );
                None
            }
            Ok(()) => Some(value.clone()),
            Err(e) => {
                problems.add(
                    *line,
                    format!("{label}: bad `renamed_from`: {e}"),
                    Some(NAME_HINT.into()),
                );
                None
            }
        });

    if problems.found.len() > before {
        return None;
    }
    Some(FieldSchema {
        name: name?,
        field_type: ty,
        required: draft.required,
        default,
        description: draft.description.clone().unwrap_or_default(),
        constraints,
        renamed_from,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{dataset, field};

    fn problems(drafts: &[DatasetDraft]) -> Vec<String> {
        build_catalog(drafts)
            .unwrap_err()
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    fn located<T>(value: T) -> Option<Located<T>> {
        Some(Located::new(value, Some(3)))
    }

    #[test]
    fn a_valid_dataset_builds_with_key_fields_required() {
        let catalog = build_catalog(&[dataset(
            "wells",
            vec![field("id", "integer"), field("name", "string")],
            &["id"],
        )])
        .unwrap();
        let wells = catalog.get("wells").unwrap();
        assert!(wells.fields[0].required);
        assert!(!wells.fields[1].required);
        assert_eq!(wells.primary_key, vec![0]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut bad_type = field("b", "text");
        bad_type.line = Some(7);
        let found = problems(&[dataset(
            "wells",
            vec![
                field("a", "integer"),
                field("a", "string"),
                bad_type,
                field("Bad-Name", "string"),
            ],
            &["missing"],
        )]);
        assert!(
            found.iter().any(|m| m == "duplicate field `a` in wells"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m == "field `b` has unknown type `text`"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("bad field name: name `Bad-Name` is not lowercase")),
            "{found:?}"
        );
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn key_problems() {
        let found = problems(&[dataset(
            "w",
            vec![field("a", "integer"), field("j", "json")],
            &["b"],
        )]);
        assert_eq!(found, vec!["primary key field `b` is not a field of w"]);
        let found = problems(&[dataset("w", vec![field("j", "json")], &["j"])]);
        assert_eq!(
            found,
            vec!["primary key field `j` has type json, which cannot be a key"]
        );
        let found = problems(&[dataset("w", vec![field("a", "integer")], &["a", "a"])]);
        assert_eq!(found, vec!["primary key field `a` is listed twice"]);
        let mut no_key = dataset("w", vec![field("a", "integer")], &[]);
        no_key.primary_key = None;
        assert_eq!(problems(&[no_key]), vec!["w has no `primary_key`"]);
    }

    #[test]
    fn constraint_problems() {
        let mut range = field("n", "integer");
        range.min = located(json!(10));
        range.max = located(json!(1));
        let mut regex = field("s", "string");
        regex.pattern = located("([a-z".to_string());
        let mut misplaced = field("f", "float");
        misplaced.pattern = located("x".to_string());
        misplaced.max_length = located(3);
        let mut bad_default = field("d", "integer");
        bad_default.default = located(json!("zero"));
        let mut bad_bound = field("t", "timestamp");
        bad_bound.min = located(json!("yesterday"));
        let mut outside = field("o", "integer");
        outside.max = located(json!(5));
        outside.default = located(json!(9));
        let mut choices = field("c", "string");
        choices.one_of = located(vec![json!("a"), json!(1)]);
        let mut bool_min = field("b", "boolean");
        bool_min.min = located(json!(false));
        let found = problems(&[dataset(
            "w",
            vec![
                field("id", "integer"),
                range,
                regex,
                misplaced,
                bad_default,
                bad_bound,
                outside,
                choices,
                bool_min,
            ],
            &["id"],
        )]);
        let expect = [
            "field `n`: `min` (10) is greater than `max` (1)",
            "field `s`: invalid regex `([a-z`",
            "field `f`: `pattern` does not apply to type float",
            "field `f`: `max_length` does not apply to type float",
            "field `d`: `default` is not a valid integer",
            "field `t`: `min` is not a valid timestamp",
            "field `o`: `default` breaks the field's own rule: 9 is greater than the maximum 5",
            "field `c`: `one_of` item 2 is not a valid string",
            "field `b`: `min` does not apply to type boolean",
        ];
        for e in expect {
            assert!(
                found.iter().any(|m| m.starts_with(e)),
                "missing `{e}` in {found:?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
    }

    #[test]
    fn dataset_names_and_duplicates() {
        let found = problems(&[dataset("select", vec![field("id", "integer")], &["id"])]);
        assert_eq!(
            found,
            vec!["bad dataset name: name `select` is an SQL keyword"]
        );
        let a = dataset("w", vec![field("id", "integer")], &["id"]);
        let found = build_catalog(&[a.clone(), a]).unwrap_err();
        assert_eq!(found[0].message, "dataset `w` is declared twice");
        assert_eq!(
            found[0].hint.as_deref(),
            Some("it is first declared at test.toml:1; rename or remove one")
        );
        let found = problems(&[dataset("w", vec![], &["id"])]);
        assert!(
            found.contains(&"w declares no fields".to_string()),
            "{found:?}"
        );
    }

    #[test]
    fn problems_print_with_file_line_and_hint() {
        let problem = SchemaProblem {
            origin: "schemas/a.toml".into(),
            line: Some(4),
            message: "m".into(),
            hint: Some("h".into()),
        };
        assert_eq!(problem.to_string(), "schemas/a.toml:4: m\n  hint: h");
    }
}
