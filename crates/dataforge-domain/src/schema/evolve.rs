//! Schema evolution as a plan: how a dataset's declared schema differs from the one its stored
//! data was written under, each difference a step with its risk, and how each declared field is
//! filled from the stored columns. Pure: storage adapters execute plans, and refuse the risky ones
//! as [`Risk`] says.

use std::fmt;

use super::{DatasetSchema, FieldSchema};
use crate::value::{FieldType, Value};

/// How much a step may cost the stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Risk {
    /// Nothing stored can break it: applied by itself at start.
    Safe,
    /// Stored records might break it: applied once every one is checked.
    Checked,
    /// Data is lost or rewritten: applied only by `dataforge migrate --apply --allow-destructive`.
    Destructive,
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Safe => "safe",
            Risk::Checked => "checked",
            Risk::Destructive => "destructive",
        })
    }
}

/// One difference between the stored and the declared schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub risk: Risk,
    pub description: String,
}

/// Where a declared field's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    /// A stored column (under this name), converted to the declared type when `converted`.
    Stored {
        column: String,
        from: FieldType,
        converted: bool,
    },
    /// A new field: its default, or null, in every stored record.
    New,
}

/// How the stored table's columns change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnChange {
    /// Same columns, in the same order, of the same types (`NOT NULL` may change).
    None,
    /// New fields after all the stored ones, which keep their names and types.
    Append,
    /// Anything else (a rename, a removal, a type change, another order): the table is rewritten.
    Rewrite,
}

/// The plan for one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetPlan {
    pub dataset: String,
    pub steps: Vec<Step>,
    /// For each declared field, in order.
    pub sources: Vec<FieldSource>,
    pub columns: ColumnChange,
    /// Whether the primary key changes (its fields or their types): stored keys are checked for
    /// uniqueness first, and the key index is rebuilt.
    pub key_changed: bool,
}

impl DatasetPlan {
    /// The riskiest step, if there is any.
    pub fn risk(&self) -> Option<Risk> {
        self.steps.iter().map(|s| s.risk).max()
    }

    /// Whether stored records must be checked against the declared schema first: a checked step,
    /// or a field whose values are converted (a value that does not convert becomes null, which a
    /// required field refuses).
    pub fn needs_check(&self) -> bool {
        self.steps.iter().any(|s| s.risk == Risk::Checked) || self.converts()
    }

    fn converts(&self) -> bool {
        self.sources.iter().any(|s| {
            matches!(
                s,
                FieldSource::Stored {
                    converted: true,
                    ..
                }
            )
        })
    }
}

/// Compares the stored schema of a dataset with its declaration.
pub fn plan(stored: &DatasetSchema, declared: &DatasetSchema) -> DatasetPlan {
    let mut steps = Vec::new();
    let mut add = |risk, description: String| steps.push(Step { risk, description });
    let mut sources = Vec::with_capacity(declared.fields.len());
    let mut kept = Vec::new();
    let renamed_away: Vec<&str> = declared
        .fields
        .iter()
        .filter_map(|f| renamed_from(stored, f))
        .collect();
    for field in &declared.fields {
        let previous = match renamed_from(stored, field) {
            Some(old) => {
                add(
                    Risk::Safe,
                    format!("rename field `{old}` to `{}`, keeping its data", field.name),
                );
                stored.field(old)
            }
            // a stored field of this name is renamed to another: this one is new
            None if renamed_away.contains(&field.name.as_str()) => None,
            None => stored.field(&field.name),
        };
        match previous {
            None => {
                sources.push(FieldSource::New);
                new_field(field, &mut add);
            }
            Some(old) => {
                kept.push(old.name.as_str());
                sources.push(FieldSource::Stored {
                    column: old.name.clone(),
                    from: old.field_type,
                    converted: old.field_type != field.field_type,
                });
                changed_field(old, field, &mut add);
            }
        }
    }
    for old in stored
        .fields
        .iter()
        .filter(|f| !kept.contains(&f.name.as_str()))
    {
        add(
            Risk::Destructive,
            format!("remove field `{}` and its data", old.name),
        );
    }
    let names = |schema: &DatasetSchema, fields: &[usize]| -> Vec<String> {
        fields
            .iter()
            .map(|&i| schema.fields[i].name.clone())
            .collect()
    };
    let stored_key: Vec<String> = stored
        .primary_key
        .iter()
        .map(|&i| renamed_name(stored, declared, &stored.fields[i].name))
        .collect();
    let key_retyped = declared.primary_key.iter().any(|&i| {
        matches!(
            &sources[i],
            FieldSource::Stored {
                converted: true,
                ..
            }
        )
    });
    let key_changed = stored_key != names(declared, &declared.primary_key) || key_retyped;
    if stored_key != names(declared, &declared.primary_key) {
        add(
            Risk::Destructive,
            format!(
                "primary key ({}) becomes ({}); stored keys are checked for uniqueness",
                stored_key.join(", "),
                names(declared, &declared.primary_key).join(", ")
            ),
        );
    }
    let indexes = |schema: &DatasetSchema| -> Vec<Vec<String>> {
        schema.indexes.iter().map(|i| names(schema, i)).collect()
    };
    for index in indexes(declared)
        .iter()
        .filter(|i| !indexes(stored).contains(i))
    {
        add(Risk::Safe, format!("build index ({})", index.join(", ")));
    }
    for index in indexes(stored)
        .iter()
        .filter(|i| !indexes(declared).contains(i))
    {
        add(Risk::Safe, format!("drop index ({})", index.join(", ")));
    }
    if names(stored, &stored.cluster_by) != names(declared, &declared.cluster_by) {
        add(Risk::Safe, "change cluster_by".into());
    }
    let partitioning = |s: &DatasetSchema| {
        s.partition_by
            .map(|p| format!("{} by {}", s.fields[p.field].name, p.interval.name()))
    };
    if partitioning(stored) != partitioning(declared) {
        let to = partitioning(declared).unwrap_or_else(|| "none".into());
        add(
            Risk::Safe,
            format!("change partition_by to {to} (the table is rewritten where partitioned)"),
        );
    }
    if stored.description != declared.description {
        add(Risk::Safe, "change the dataset's description".into());
    }
    let columns = column_change(stored, declared, &sources);
    DatasetPlan {
        dataset: declared.name.clone(),
        steps,
        sources,
        columns,
        key_changed,
    }
}

/// The stored field a declared one is renamed from, when the stored schema has it.
fn renamed_from<'s>(stored: &'s DatasetSchema, field: &FieldSchema) -> Option<&'s str> {
    let old = field.renamed_from.as_deref()?;
    stored.field(old).map(|f| f.name.as_str())
}

/// The declared name of a stored field (renamed or not).
fn renamed_name(stored: &DatasetSchema, declared: &DatasetSchema, stored_name: &str) -> String {
    declared
        .fields
        .iter()
        .find(|f| renamed_from(stored, f) == Some(stored_name))
        .map_or_else(|| stored_name.to_owned(), |f| f.name.clone())
}

fn new_field(field: &FieldSchema, add: &mut impl FnMut(Risk, String)) {
    let fill = match &field.default {
        Some(default) => format!("its default {default}"),
        None => "null".into(),
    };
    let risk = if field.required {
        Risk::Checked
    } else {
        Risk::Safe
    };
    add(
        risk,
        format!(
            "add {} field `{}` ({}); stored records get {fill}",
            if field.required {
                "required"
            } else {
                "optional"
            },
            field.name,
            field.field_type
        ),
    );
}

fn changed_field(old: &FieldSchema, new: &FieldSchema, add: &mut impl FnMut(Risk, String)) {
    let name = &new.name;
    if old.field_type != new.field_type {
        let (risk, how) = if widens(old.field_type, new.field_type) {
            (Risk::Safe, "widened without loss")
        } else {
            (Risk::Destructive, "values that do not convert become null")
        };
        add(
            risk,
            format!(
                "change field `{name}` from {} to {} ({how})",
                old.field_type, new.field_type
            ),
        );
    }
    match (old.required, new.required) {
        (false, true) => add(Risk::Checked, format!("make field `{name}` required")),
        (true, false) => add(Risk::Safe, format!("make field `{name}` optional")),
        _ => {}
    }
    for (rule, tighter) in rule_changes(old, new) {
        let (risk, how) = if tighter {
            (Risk::Checked, "tighter")
        } else {
            (Risk::Safe, "relaxed")
        };
        add(risk, format!("field `{name}`: `{rule}` {how}"));
    }
    if old.default != new.default {
        add(Risk::Safe, format!("field `{name}`: change the default"));
    }
    if old.description != new.description {
        add(
            Risk::Safe,
            format!("field `{name}`: change the description"),
        );
    }
}

/// Whether values of `from` convert to `to` without loss.
fn widens(from: FieldType, to: FieldType) -> bool {
    matches!(
        (from, to),
        (FieldType::Integer, FieldType::Float) | (FieldType::Date, FieldType::Timestamp)
    )
}

/// A bound as the wider type it may be compared with (an integer as a float, a date as a
/// timestamp).
fn widened(value: &Value) -> Value {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    match value {
        Value::Integer(i) => Value::Float(*i as f64),
        Value::Date(days) => Value::Timestamp(i64::from(*days) * MICROS_PER_DAY),
        other => other.clone(),
    }
}

/// Each rule that changed, and whether it got tighter (stored values might break it).
fn rule_changes(old: &FieldSchema, new: &FieldSchema) -> Vec<(&'static str, bool)> {
    use std::cmp::Ordering::{Greater, Less};
    let (a, b) = (&old.constraints, &new.constraints);
    let mut changes = Vec::new();
    let bound = |old: &Option<Value>, new: &Option<Value>, tighter_when| match (old, new) {
        (_, None) if old.is_some() => Some(false),
        (None, Some(_)) => Some(true),
        (Some(o), Some(n)) if o != n => {
            // a widened field's old bound is compared as the new type
            let o = if std::mem::discriminant(o) == std::mem::discriminant(n) {
                o.clone()
            } else {
                widened(o)
            };
            Some(n.compare(&o).is_none_or(|order| order == tighter_when))
        }
        _ => None,
    };
    if let Some(tighter) = bound(&a.min, &b.min, Greater) {
        changes.push(("min", tighter));
    }
    if let Some(tighter) = bound(&a.max, &b.max, Less) {
        changes.push(("max", tighter));
    }
    match (&a.one_of, &b.one_of) {
        (Some(_), None) => changes.push(("one_of", false)),
        (None, Some(_)) => changes.push(("one_of", true)),
        (Some(o), Some(n)) if o != n => changes.push(("one_of", !o.iter().all(|v| n.contains(v)))),
        _ => {}
    }
    let pattern = |c: &super::Constraints| c.pattern.as_ref().map(|p| p.source.clone());
    match (pattern(a), pattern(b)) {
        (Some(_), None) => changes.push(("pattern", false)),
        (o, n) if o != n => changes.push(("pattern", true)),
        _ => {}
    }
    match (a.max_length, b.max_length) {
        (Some(_), None) => changes.push(("max_length", false)),
        (None, Some(_)) => changes.push(("max_length", true)),
        (Some(o), Some(n)) if o != n => changes.push(("max_length", n < o)),
        _ => {}
    }
    changes
}

fn column_change(
    stored: &DatasetSchema,
    declared: &DatasetSchema,
    sources: &[FieldSource],
) -> ColumnChange {
    let kept_in_place =
        stored
            .fields
            .iter()
            .zip(&declared.fields)
            .zip(sources)
            .all(|((old, new), source)| {
                old.name == new.name
                    && old.field_type == new.field_type
                    && matches!(source, FieldSource::Stored { column, .. } if *column == old.name)
            });
    if !kept_in_place || sources.len() < stored.fields.len() {
        return ColumnChange::Rewrite;
    }
    let tail = &sources[stored.fields.len()..];
    if tail.is_empty() {
        ColumnChange::None
    } else if tail.iter().all(|s| *s == FieldSource::New) {
        ColumnChange::Append
    } else {
        ColumnChange::Rewrite
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{FieldDraft, Located, build_catalog};
    use crate::testing::{dataset, field};

    fn schema(fields: Vec<FieldDraft>, key: &[&str]) -> DatasetSchema {
        let catalog = build_catalog(&[dataset("d", fields, key)]).expect("valid");
        catalog.get("d").expect("built").as_ref().clone()
    }

    fn base() -> Vec<FieldDraft> {
        let mut name = field("name", "string");
        name.max_length = Some(Located::new(10, None));
        vec![field("id", "integer"), name, field("n", "integer")]
    }

    fn risks(plan: &DatasetPlan) -> Vec<Risk> {
        plan.steps.iter().map(|s| s.risk).collect()
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let plan = plan(&schema(base(), &["id"]), &schema(base(), &["id"]));
        assert!(plan.steps.is_empty());
        assert_eq!(plan.columns, ColumnChange::None);
        assert_eq!(plan.risk(), None);
    }

    #[test]
    fn an_optional_field_at_the_end_is_appended_safely() {
        let mut fields = base();
        let mut extra = field("extra", "string");
        extra.default = Some(Located::new(json!("x"), None));
        fields.push(extra);
        let plan = plan(&schema(base(), &["id"]), &schema(fields, &["id"]));
        assert_eq!(risks(&plan), vec![Risk::Safe]);
        assert_eq!(plan.columns, ColumnChange::Append);
        assert!(plan.steps[0].description.contains("default x"), "{plan:?}");
    }

    #[test]
    fn required_fields_and_tighter_rules_are_checked() {
        let mut fields = base();
        fields[1].required = Some(Located::new(true, None));
        fields[1].max_length = Some(Located::new(5, None));
        fields[2].min = Some(Located::new(json!(0), None));
        let mut required = field("r", "integer");
        required.required = Some(Located::new(true, None));
        fields.insert(1, required);
        let plan = plan(&schema(base(), &["id"]), &schema(fields, &["id"]));
        assert!(risks(&plan).iter().all(|r| *r == Risk::Checked), "{plan:?}");
        assert_eq!(plan.steps.len(), 4);
        assert!(plan.needs_check());
        assert_eq!(plan.columns, ColumnChange::Rewrite, "a field in the middle");
    }

    #[test]
    fn relaxed_rules_widened_types_and_renames_are_safe() {
        let mut old = base();
        old[2].max = Some(Located::new(json!(5), None));
        let mut fields = base();
        fields[1].max_length = Some(Located::new(20, None));
        fields[2].field_type = Some(Located::new("float".into(), None));
        fields[2].name = Some(Located::new("amount".into(), None));
        fields[2].renamed_from = Some(Located::new("n".into(), None));
        fields[2].max = Some(Located::new(json!(9.5), None));
        let plan = plan(&schema(old, &["id"]), &schema(fields, &["id"]));
        assert!(risks(&plan).iter().all(|r| *r == Risk::Safe), "{plan:?}");
        assert_eq!(
            plan.sources[2],
            FieldSource::Stored {
                column: "n".into(),
                from: FieldType::Integer,
                converted: true,
            }
        );
        assert!(plan.needs_check(), "a converted field is checked");
        assert_eq!(plan.columns, ColumnChange::Rewrite);
    }

    #[test]
    fn bounds_compare_within_a_type() {
        let bounded = |min: i64, max: i64| {
            let mut fields = base();
            fields[2].min = Some(Located::new(json!(min), None));
            fields[2].max = Some(Located::new(json!(max), None));
            schema(fields, &["id"])
        };
        let wider = plan(&bounded(0, 10), &bounded(-5, 20));
        assert_eq!(risks(&wider), vec![Risk::Safe, Risk::Safe], "{wider:?}");
        let narrower = plan(&bounded(0, 10), &bounded(1, 9));
        assert_eq!(risks(&narrower), vec![Risk::Checked, Risk::Checked]);
    }

    #[test]
    fn removals_narrowing_and_key_changes_are_destructive() {
        let mut fields = base();
        fields.pop();
        fields[1].field_type = Some(Located::new("integer".into(), None));
        fields[1].max_length = None;
        let plan = plan(&schema(base(), &["id"]), &schema(fields, &["id", "name"]));
        let destructive: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.risk == Risk::Destructive)
            .map(|s| s.description.as_str())
            .collect();
        assert_eq!(destructive.len(), 3, "{destructive:?}");
        assert!(plan.key_changed);
        assert_eq!(plan.risk(), Some(Risk::Destructive));
    }

    #[test]
    fn renames_take_the_data_of_the_field_renamed_only() {
        // `name` becomes `label`, and a new field takes the name `name`
        let mut fields = base();
        fields[1].name = Some(Located::new("label".into(), None));
        fields[1].renamed_from = Some(Located::new("name".into(), None));
        fields.push(field("name", "string"));
        let plan = plan(&schema(base(), &["id"]), &schema(fields, &["id"]));
        assert_eq!(plan.sources[3], FieldSource::New, "{plan:?}");
        assert!(matches!(&plan.sources[1], FieldSource::Stored { column, .. } if column == "name"));
        assert!(
            plan.steps
                .iter()
                .any(|s| s.description.starts_with("add optional field `name`"))
        );
        // two names swapped
        let mut swapped = base();
        swapped[1].name = Some(Located::new("n".into(), None));
        swapped[1].field_type = Some(Located::new("integer".into(), None));
        swapped[1].max_length = None;
        swapped[1].renamed_from = Some(Located::new("name".into(), None));
        swapped[2].name = Some(Located::new("name".into(), None));
        swapped[2].field_type = Some(Located::new("string".into(), None));
        swapped[2].renamed_from = Some(Located::new("n".into(), None));
        let swap = super::plan(&schema(base(), &["id"]), &schema(swapped, &["id"]));
        assert!(
            matches!(&swap.sources[1], FieldSource::Stored { column, .. } if column == "name"),
            "{swap:?}"
        );
        assert!(matches!(&swap.sources[2], FieldSource::Stored { column, .. } if column == "n"));
    }

    #[test]
    fn a_retyped_key_field_is_a_key_change() {
        let mut fields = base();
        fields[0].field_type = Some(Located::new("float".into(), None));
        let plan = plan(&schema(base(), &["id"]), &schema(fields, &["id"]));
        assert!(plan.key_changed);
    }

    #[test]
    fn indexes_and_descriptions_are_safe() {
        let mut declared = dataset("d", base(), &["id"]);
        declared.indexes = vec![Located::new(vec!["n".into()], None)];
        declared.description = Some("about d".into());
        let declared = build_catalog(&[declared]).unwrap();
        let plan = plan(&schema(base(), &["id"]), declared.get("d").unwrap());
        assert_eq!(risks(&plan), vec![Risk::Safe, Risk::Safe]);
        assert_eq!(plan.columns, ColumnChange::None);
    }
}
