//! Checks dataset declarations and turns them into [`DatasetSchema`]s, collecting every problem
//! rather than stopping at the first, so one `dataforge check` run shows all there is to fix.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

mod field;

use super::{
    Catalog, DatasetDraft, DatasetSchema, FieldSchema, Located, PartitionInterval, Partitioning,
};
use crate::identifier::{IdentifierError, check_identifier};
use crate::value::FieldType;

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

/// How to fix a refused dataset or field name.
fn name_hint(error: &IdentifierError) -> String {
    match error {
        IdentifierError::Keyword(_) => {
            "SQL keywords cannot name a dataset; add a word, e.g. `user_events`".into()
        }
        IdentifierError::Reserved(name) => format!(
            "`{name}` is a query parameter of the API (see the README's reserved names); rename the field, e.g. `{name}_value`"
        ),
        _ => "use lowercase snake_case of at most 63 characters, e.g. `well_code`".into(),
    }
}

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

/// The fields as declared, whether or not each was valid: references to fields (key, indexes,
/// `cluster_by`) are checked against these names, so a broken field does not hide another problem.
struct Declared<'a> {
    what: &'a str,
    names: Vec<&'a str>,
    built: Vec<Option<FieldSchema>>,
}

impl Declared<'_> {
    fn list(&self) -> String {
        self.names.join(", ")
    }

    /// The position of the field `name` if it is declared, with its type when it built.
    fn find(&self, name: &str) -> Option<(usize, Option<FieldType>)> {
        let i = self.names.iter().position(|n| *n == name)?;
        Some((i, self.built[i].as_ref().map(|f| f.field_type)))
    }

    /// Positions of `listed` fields, or `None` after reporting each one that is not declared.
    fn positions(
        &self,
        listed: &[String],
        line: Option<usize>,
        role: &str,
        problems: &mut Problems<'_>,
    ) -> Option<Vec<usize>> {
        let mut positions = Vec::new();
        for name in listed {
            match self.find(name) {
                Some((i, _)) => positions.push(i),
                None => problems.add(
                    line,
                    format!("{role} field `{name}` is not a field of {}", self.what),
                    Some(format!("declared fields: {}", self.list())),
                ),
            }
        }
        (positions.len() == listed.len()).then_some(positions)
    }
}

fn build_dataset(draft: &DatasetDraft, problems: &mut Problems<'_>) -> Option<DatasetSchema> {
    let name = dataset_name(draft, problems);
    let what = name.clone().unwrap_or_else(|| "dataset".into());
    let declared = declare_fields(draft, &what, problems);
    let primary_key = primary_key(draft, &declared, problems);
    let indexes = indexes(draft, &declared, problems);
    let cluster_by = cluster_by(draft, &declared, problems);
    let partition_by = partition_by(draft, &declared, primary_key.as_deref(), problems);
    let mut fields = declared.built.into_iter().collect::<Option<Vec<_>>>()?;
    let (name, primary_key, indexes, cluster_by) = (name?, primary_key?, indexes?, cluster_by?);
    let partition_by = partition_by?;
    if fields.is_empty() {
        return None;
    }
    for &i in &primary_key {
        fields[i].required = true;
    }
    let mut schema = DatasetSchema::new(
        name,
        draft.description.clone().unwrap_or_default(),
        fields,
        primary_key,
        indexes,
        cluster_by,
    );
    schema.partition_by = partition_by;
    Some(schema)
}

fn dataset_name(draft: &DatasetDraft, problems: &mut Problems<'_>) -> Option<String> {
    let Some(Located { value, line }) = &draft.name else {
        problems.add(
            draft.line,
            "dataset has no `name`",
            Some("add `name = \"my_dataset\"`".into()),
        );
        return None;
    };
    match check_identifier(value) {
        Ok(()) => Some(value.clone()),
        Err(e) => {
            problems.add(*line, format!("bad dataset name: {e}"), Some(name_hint(&e)));
            None
        }
    }
}

/// Every field built (or `None` where it has problems), duplicates reported.
fn declare_fields<'a>(
    draft: &'a DatasetDraft,
    what: &'a str,
    problems: &mut Problems<'_>,
) -> Declared<'a> {
    if draft.fields.is_empty() {
        problems.add(
            draft.line,
            format!("{what} declares no fields"),
            Some("add `[[datasets.fields]]` tables".into()),
        );
    }
    let mut declared = Declared {
        what,
        names: Vec::new(),
        built: Vec::new(),
    };
    let zone = draft
        .timezone
        .as_ref()
        .and_then(|zone| field::time_zone(zone, what, problems));
    let mut first_line: BTreeMap<&str, Option<usize>> = BTreeMap::new();
    for field in &draft.fields {
        let built = field::build_field(field, zone, problems);
        let name = match &field.name {
            Some(Located { value, line }) => match first_line.get(value.as_str()) {
                Some(first) => {
                    let hint = first.map(|l| format!("`{value}` is first declared on line {l}"));
                    problems.add(*line, format!("duplicate field `{value}` in {what}"), hint);
                    None
                }
                None => {
                    first_line.insert(value, *line);
                    Some(value.as_str())
                }
            },
            None => None,
        };
        // a nameless or repeated field keeps its place (so positions stay those of the fields)
        // but no name: references find the first declaration, and the dataset does not build
        declared.names.push(name.unwrap_or(""));
        declared.built.push(built.filter(|_| name.is_some()));
    }
    declared
}

fn primary_key(
    draft: &DatasetDraft,
    declared: &Declared<'_>,
    problems: &mut Problems<'_>,
) -> Option<Vec<usize>> {
    let what = declared.what;
    let Some(Located { value, line }) = &draft.primary_key else {
        problems.add(
            draft.line,
            format!("{what} has no `primary_key`"),
            Some("add `primary_key = [\"id\"]`, listing one or more fields".into()),
        );
        return None;
    };
    if value.is_empty() {
        problems.add(
            *line,
            format!("{what} has an empty `primary_key`"),
            Some("list one or more fields".into()),
        );
        return None;
    }
    let mut ok = true;
    let mut listed = HashSet::new();
    for key in value {
        if !listed.insert(key) {
            problems.add(
                *line,
                format!("primary key field `{key}` is listed twice"),
                None,
            );
            ok = false;
        }
    }
    let positions = declared.positions(value, *line, "primary key", problems);
    ok &= positions.is_some();
    // each field once, however often it is listed
    let once: Vec<&String> = value.iter().filter(|k| listed.remove(k)).collect();
    for key in once {
        if let Some((_, Some(FieldType::Json))) = declared.find(key) {
            problems.add(
                *line,
                format!("primary key field `{key}` has type json, which cannot be a key"),
                Some("use string, integer, date or timestamp fields for keys".into()),
            );
            ok = false;
        }
        let optional = draft
            .fields
            .iter()
            .find(|f| f.name.as_ref().is_some_and(|n| &n.value == key))
            .and_then(|f| f.required.as_ref())
            .filter(|required| !required.value);
        if let Some(optional) = optional {
            problems.add(
                optional.line,
                format!("field `{key}` is part of the primary key but says `required = false`"),
                Some("key fields are always required: remove `required = false`".into()),
            );
            ok = false;
        }
    }
    positions.filter(|_| ok)
}

fn indexes(
    draft: &DatasetDraft,
    declared: &Declared<'_>,
    problems: &mut Problems<'_>,
) -> Option<Vec<Vec<usize>>> {
    let mut indexes = Vec::new();
    for Located { value, line } in &draft.indexes {
        if value.is_empty() {
            let what = declared.what;
            problems.add(*line, format!("an index of {what} lists no fields"), None);
            continue;
        }
        if let Some(index) = declared.positions(value, *line, "index", problems) {
            indexes.push(index);
        }
    }
    (indexes.len() == draft.indexes.len()).then_some(indexes)
}

fn cluster_by(
    draft: &DatasetDraft,
    declared: &Declared<'_>,
    problems: &mut Problems<'_>,
) -> Option<Vec<usize>> {
    let Some(Located { value, line }) = &draft.cluster_by else {
        return Some(Vec::new());
    };
    if value.is_empty() {
        let what = declared.what;
        problems.add(
            *line,
            format!("`cluster_by` of {what} lists no fields"),
            None,
        );
        return None;
    }
    let positions = declared.positions(value, *line, "cluster_by", problems);
    let mut ok = positions.is_some();
    for name in value {
        if let Some((_, Some(FieldType::Json))) = declared.find(name) {
            problems.add(
                *line,
                format!("cluster_by field `{name}` has type json, which has no order"),
                Some("cluster by fields with an order: numbers, strings, dates, timestamps".into()),
            );
            ok = false;
        }
    }
    positions.filter(|_| ok)
}

/// `partition_by`: a date or timestamp field of the primary key (a partitioned table keeps its key
/// unique per partition, so the key must hold the partition field) and `month` or `year`.
fn partition_by(
    draft: &DatasetDraft,
    declared: &Declared<'_>,
    primary_key: Option<&[usize]>,
    problems: &mut Problems<'_>,
) -> Option<Option<Partitioning>> {
    let Some(Located { value, line }) = &draft.partition_by else {
        return Some(None);
    };
    let what = declared.what;
    let example =
        "write it like partition_by = { field = \"production_period\", interval = \"month\" }";
    let interval = match value.interval.as_deref().map(PartitionInterval::from_name) {
        Some(Some(interval)) => Some(interval),
        Some(None) | None => {
            problems.add(
                *line,
                format!("`partition_by` of {what} needs `interval`, `month` or `year`"),
                Some(example.into()),
            );
            None
        }
    };
    let Some(name) = &value.field else {
        problems.add(
            *line,
            format!("`partition_by` of {what} names no `field`"),
            Some(example.into()),
        );
        return None;
    };
    let field = declared.positions(std::slice::from_ref(name), *line, "partition_by", problems)?[0];
    if !matches!(
        declared.find(name),
        Some((_, Some(FieldType::Date | FieldType::Timestamp)))
    ) {
        problems.add(
            *line,
            format!("partition_by field `{name}` is not a date or a timestamp"),
            Some("partitions are ranges of time: name a date or timestamp field".into()),
        );
        return None;
    }
    if primary_key.is_some_and(|key| !key.contains(&field)) {
        problems.add(
            *line,
            format!("partition_by field `{name}` is not part of the primary key of {what}"),
            Some(
                "a partitioned table keeps keys unique per partition: add the field to primary_key"
                    .into(),
            ),
        );
        return None;
    }
    Some(Some(Partitioning {
        field,
        interval: interval?,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::PartitionDraft;
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
        assert!(
            found
                .iter()
                .any(|m| m == "primary key field `missing` is not a field of wells"),
            "a broken field does not hide a wrong key: {found:?}"
        );
        assert_eq!(found.len(), 4, "{found:?}");
    }

    #[test]
    fn references_are_checked_while_fields_are_broken() {
        let mut draft = dataset(
            "w",
            vec![field("id", "integer"), field("n", "number")],
            &["id"],
        );
        draft.indexes = vec![Located::new(vec!["field_code".into()], Some(5))];
        draft.cluster_by = located(vec!["n".into(), "nope".into()]);
        let found = problems(&[draft]);
        assert_eq!(
            found,
            vec![
                "field `n` has unknown type `number`",
                "index field `field_code` is not a field of w",
                "cluster_by field `nope` is not a field of w",
            ]
        );
    }

    #[test]
    fn partitions_are_months_or_years_of_a_time_field_of_the_key() {
        let partitioned = |name: &str, interval: &str| {
            let mut draft = dataset(
                "p",
                vec![
                    field("id", "integer"),
                    field("at", "timestamp"),
                    field("day", "date"),
                ],
                &["id", "at"],
            );
            draft.partition_by = located(PartitionDraft {
                field: Some(name.into()),
                interval: Some(interval.into()),
            });
            draft
        };
        let catalog = build_catalog(&[partitioned("at", "month")]).unwrap();
        assert_eq!(
            catalog.get("p").unwrap().partition_by,
            Some(Partitioning {
                field: 1,
                interval: PartitionInterval::Month
            })
        );
        assert_eq!(
            problems(&[partitioned("day", "year")]),
            vec!["partition_by field `day` is not part of the primary key of p"]
        );
        assert_eq!(
            problems(&[partitioned("id", "month")]),
            vec!["partition_by field `id` is not a date or a timestamp"]
        );
        assert_eq!(
            problems(&[partitioned("at", "week")]),
            vec!["`partition_by` of p needs `interval`, `month` or `year`"]
        );
        assert_eq!(
            problems(&[partitioned("nope", "month")]),
            vec!["partition_by field `nope` is not a field of p"]
        );
    }

    #[test]
    fn timestamp_reading_options() {
        let mut at = field("at", "timestamp");
        at.epoch = located("ms".to_string());
        let mut local = field("local", "timestamp");
        local.timezone = located("Europe/Berlin".to_string());
        let mut draft = dataset("w", vec![field("id", "integer"), at, local], &["id"]);
        draft.timezone = located("UTC".to_string());
        let catalog = build_catalog(std::slice::from_ref(&draft)).unwrap();
        let fields = &catalog.get("w").unwrap().fields;
        assert_eq!(fields[1].timestamps.timezone.map(|z| z.name()), Some("UTC"));
        assert_eq!(fields[1].timestamps.epoch.map(|e| e.name()), Some("ms"));
        assert_eq!(
            fields[2].timestamps.timezone.map(|z| z.name()),
            Some("Europe/Berlin")
        );
        assert!(
            fields[0].timestamps.is_default(),
            "only timestamp fields take the dataset's zone"
        );

        let mut count = field("n", "integer");
        count.epoch = located("s".to_string());
        let mut zone = field("t", "timestamp");
        zone.timezone = located("Mars/Base".to_string());
        let mut unit = field("u", "timestamp");
        unit.epoch = located("us".to_string());
        let found = problems(&[dataset(
            "w",
            vec![field("id", "integer"), count, zone, unit],
            &["id"],
        )]);
        assert_eq!(
            found,
            vec![
                "field `n`: `epoch` does not apply to type integer",
                "field `t`: unknown time zone `Mars/Base`",
                "field `u`: unknown `epoch` unit `us`",
            ]
        );
        let mut draft = dataset(
            "w",
            vec![
                field("id", "integer"),
                field("a", "timestamp"),
                field("b", "timestamp"),
            ],
            &["id"],
        );
        draft.timezone = located("Mars/Base".to_string());
        assert_eq!(
            problems(&[draft]),
            vec!["w: unknown time zone `Mars/Base`"],
            "reported once"
        );
    }

    #[test]
    fn a_key_field_cannot_be_optional() {
        let mut id = field("id", "integer");
        id.required = Some(Located::new(false, Some(9)));
        let found = build_catalog(&[dataset("w", vec![id], &["id"])]).unwrap_err();
        assert_eq!(
            found[0].message,
            "field `id` is part of the primary key but says `required = false`"
        );
        assert_eq!(found[0].line, Some(9));
        assert_eq!(
            found[0].hint.as_deref(),
            Some("key fields are always required: remove `required = false`")
        );
    }

    #[test]
    fn field_names_may_be_keywords_but_not_parameters() {
        let catalog = build_catalog(&[dataset(
            "events",
            vec![field("user", "string"), field("time", "timestamp")],
            &["user", "time"],
        )]);
        assert!(catalog.is_ok(), "{catalog:?}");
        let found = build_catalog(&[dataset("w", vec![field("limit", "integer")], &["limit"])])
            .unwrap_err();
        assert!(
            found[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("`limit_value`")),
            "{found:?}"
        );
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
