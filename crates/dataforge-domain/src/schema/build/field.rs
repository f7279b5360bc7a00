//! One field's declaration checked rule by rule: every rule reports its own problems, so a field
//! with several mistakes shows them all.

use regex::Regex;

use super::{Problems, name_hint};
use crate::identifier::check_field_name;
use crate::schema::{Constraints, FieldDraft, FieldSchema, Located, Pattern};
use crate::timestamps::{Epoch, TimestampInput, Tz, zone_named};
use crate::validate::check_value;
use crate::value::{FieldType, Value};

/// `zone`: the dataset's `timezone` (checked already), for a timestamp field that names none.
pub(super) fn build_field(
    draft: &FieldDraft,
    zone: Option<Tz>,
    problems: &mut Problems<'_>,
) -> Option<FieldSchema> {
    let before = problems.found.len();
    let name = field_name(draft, problems);
    let label = name
        .as_ref()
        .map(|n| format!("field `{n}`"))
        .unwrap_or_else(|| "field".into());
    let ty = field_type(draft, &label, problems)?;
    let rule = Rule {
        label: &label,
        ty,
        problems,
    };
    let constraints = constraints(draft, rule);
    let default = default(
        draft,
        &constraints,
        Rule {
            label: &label,
            ty,
            problems,
        },
    );
    let renamed_from = renamed_from(draft, name.as_deref(), &label, problems);
    let timestamps = timestamps(
        draft,
        zone,
        Rule {
            label: &label,
            ty,
            problems,
        },
    );
    if problems.found.len() > before {
        return None;
    }
    Some(FieldSchema {
        name: name?,
        field_type: ty,
        required: draft.required.as_ref().is_some_and(|r| r.value),
        default,
        description: draft.description.clone().unwrap_or_default(),
        constraints,
        renamed_from,
        timestamps,
    })
}

/// `timezone` and `epoch`: timestamp fields only; the field's own zone wins over the dataset's.
fn timestamps(
    draft: &FieldDraft,
    dataset_zone: Option<Tz>,
    rule: Rule<'_, '_, '_>,
) -> TimestampInput {
    let (label, ty) = (rule.label, rule.ty);
    let mut input = TimestampInput::default();
    for (key, given) in [("timezone", &draft.timezone), ("epoch", &draft.epoch)] {
        if let Some(Located { line, .. }) = given
            && ty != FieldType::Timestamp
        {
            rule.problems.add(
                *line,
                format!("{label}: `{key}` does not apply to type {ty}"),
                Some(format!("`{key}` tells how to read timestamp fields")),
            );
        }
    }
    if ty != FieldType::Timestamp {
        return input;
    }
    input.timezone = match &draft.timezone {
        Some(zone) => time_zone(zone, label, rule.problems),
        None => dataset_zone,
    };
    if let Some(Located { value, line }) = &draft.epoch {
        input.epoch = Epoch::from_name(value);
        if input.epoch.is_none() {
            rule.problems.add(
                *line,
                format!("{label}: unknown `epoch` unit `{value}`"),
                Some("`epoch = \"s\"` (seconds) or `epoch = \"ms\"` (milliseconds)".into()),
            );
        }
    }
    input
}

/// What every rule of a typed field reports against.
struct Rule<'l, 'p, 'o> {
    label: &'l str,
    ty: FieldType,
    problems: &'p mut Problems<'o>,
}

fn field_name(draft: &FieldDraft, problems: &mut Problems<'_>) -> Option<String> {
    let Some(Located { value, line }) = &draft.name else {
        problems.add(
            draft.line,
            "field has no `name`",
            Some("add `name = \"my_field\"`".into()),
        );
        return None;
    };
    match check_field_name(value) {
        Ok(()) => Some(value.clone()),
        Err(e) => {
            problems.add(*line, format!("bad field name: {e}"), Some(name_hint(&e)));
            None
        }
    }
}

fn field_type(draft: &FieldDraft, label: &str, problems: &mut Problems<'_>) -> Option<FieldType> {
    let type_names = || format!("one of: {}", FieldType::ALL.map(|t| t.name()).join(", "));
    let Some(Located { value, line }) = &draft.field_type else {
        problems.add(
            draft.line,
            format!("{label} has no `type`"),
            Some(type_names()),
        );
        return None;
    };
    let found = FieldType::from_name(value);
    if found.is_none() {
        problems.add(
            *line,
            format!("{label} has unknown type `{value}`"),
            Some(type_names()),
        );
    }
    found
}

fn constraints(draft: &FieldDraft, mut rule: Rule<'_, '_, '_>) -> Constraints {
    let min = bound(&draft.min, "min", &mut rule);
    let max = bound(&draft.max, "max", &mut rule);
    if let (Some(lo), Some(hi)) = (&min, &max)
        && lo.compare(hi) == Some(std::cmp::Ordering::Greater)
    {
        let line = draft.min.as_ref().and_then(|m| m.line);
        rule.problems.add(
            line,
            format!("{}: `min` ({lo}) is greater than `max` ({hi})", rule.label),
            Some("swap them or fix one".into()),
        );
    }
    Constraints {
        min,
        max,
        one_of: one_of(draft, &mut rule),
        pattern: pattern(draft, &mut rule),
        max_length: max_length(draft, &mut rule),
    }
}

fn bound(
    bound: &Option<Located<serde_json::Value>>,
    key: &str,
    rule: &mut Rule<'_, '_, '_>,
) -> Option<Value> {
    let Located { value, line } = bound.as_ref()?;
    let (label, ty) = (rule.label, rule.ty);
    if !ty.is_ordered() {
        rule.problems.add(
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
            rule.problems.add(
                *line,
                format!("{label}: `{key}` is not a valid {ty}: {e}"),
                Some(format!(
                    "write `{key}` as a {ty} value, e.g. {}",
                    ty.example()
                )),
            );
            None
        }
    }
}

fn one_of(draft: &FieldDraft, rule: &mut Rule<'_, '_, '_>) -> Option<Vec<Value>> {
    let Located { value, line } = draft.one_of.as_ref()?;
    let (label, ty) = (rule.label, rule.ty);
    if ty == FieldType::Json {
        rule.problems.add(
            *line,
            format!("{label}: `one_of` does not apply to type json"),
            Some("remove `one_of`, or give the field a type with values to list".into()),
        );
        return None;
    }
    if value.is_empty() {
        rule.problems.add(
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
            Ok(_) => rule.problems.add(
                *line,
                format!("{label}: `one_of` item {} is null", i + 1),
                Some("remove it: a field that is not required accepts null anyway".into()),
            ),
            Err(e) => rule.problems.add(
                *line,
                format!("{label}: `one_of` item {} is not a valid {ty}: {e}", i + 1),
                Some(format!("every item is a {ty}, e.g. {}", ty.example())),
            ),
        }
    }
    Some(allowed)
}

fn pattern(draft: &FieldDraft, rule: &mut Rule<'_, '_, '_>) -> Option<Pattern> {
    let Located { value, line } = draft.pattern.as_ref()?;
    let (label, ty) = (rule.label, rule.ty);
    if !ty.is_text() {
        rule.problems.add(
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
            let detail = e.to_string();
            let detail = detail.lines().last().unwrap_or_default().trim();
            rule.problems.add(
                *line,
                format!("{label}: invalid regex `{value}`: {detail}"),
                Some("patterns use Rust regex syntax (https://docs.rs/regex)".into()),
            );
            None
        }
    }
}

fn max_length(draft: &FieldDraft, rule: &mut Rule<'_, '_, '_>) -> Option<u64> {
    let Located { value, line } = draft.max_length.as_ref()?;
    let (label, ty) = (rule.label, rule.ty);
    if !ty.is_text() {
        rule.problems.add(
            *line,
            format!("{label}: `max_length` does not apply to type {ty}"),
            Some("`max_length` applies to string fields".into()),
        );
        return None;
    }
    match u64::try_from(*value) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            rule.problems.add(
                *line,
                format!("{label}: `max_length` must be a positive integer, found {value}"),
                Some("the most characters a value may have, e.g. `max_length = 120`".into()),
            );
            None
        }
    }
}

fn default(draft: &FieldDraft, constraints: &Constraints, rule: Rule<'_, '_, '_>) -> Option<Value> {
    let Located { value, line } = draft.default.as_ref()?;
    let (label, ty) = (rule.label, rule.ty);
    match Value::from_json(ty, value) {
        Ok(v) if v.is_null() => None,
        Ok(v) => match check_value(&v, constraints) {
            Ok(()) => Some(v),
            Err(e) => {
                rule.problems.add(
                    *line,
                    format!(
                        "{label}: `default` breaks the field's own rule: {}",
                        e.message
                    ),
                    Some("give a default the field's rules accept".into()),
                );
                None
            }
        },
        Err(e) => {
            rule.problems.add(
                *line,
                format!("{label}: `default` is not a valid {ty}: {e}"),
                Some(format!(
                    "write the default as a {ty} value, e.g. {}",
                    ty.example()
                )),
            );
            None
        }
    }
}

fn renamed_from(
    draft: &FieldDraft,
    name: Option<&str>,
    label: &str,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let Located { value, line } = draft.renamed_from.as_ref()?;
    match check_field_name(value) {
        Ok(()) if Some(value.as_str()) == name => {
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
                Some(name_hint(&e)),
            );
            None
        }
    }
}

/// A `timezone` by IANA name, reported as `what`'s when unknown.
pub(super) fn time_zone(
    Located { value, line }: &Located<String>,
    what: &str,
    problems: &mut Problems<'_>,
) -> Option<Tz> {
    let zone = zone_named(value);
    if zone.is_none() {
        problems.add(
            *line,
            format!("{what}: unknown time zone `{value}`"),
            Some("use \"UTC\" or an IANA zone name, e.g. \"America/Sao_Paulo\"".into()),
        );
    }
    zone
}
