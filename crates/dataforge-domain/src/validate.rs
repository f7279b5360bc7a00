//! Validation of records against their schema, column by column over Arrow arrays, collecting
//! every violation with its row and field so a client can fix a whole request at once.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use serde::Serialize;

use crate::schema::{Constraints, DatasetSchema};
use crate::value::{FieldType, Value};

/// At most this many violations are listed in one answer; the total is always counted.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

/// One problem with one value (or one row) of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// 1-based position of the record within the request.
    pub row: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Stable machine-readable reason: `required`, `type`, `overflow`, `min`, `max`, `one_of`,
    /// `pattern`, `max_length`, `unknown_field`, `duplicate_field`, `not_an_object`,
    /// `out_of_range` (a date or timestamp outside the years 1 to 9999), `nul_character`.
    pub code: &'static str,
    pub message: String,
}

/// Violations found in a request: the first [`MAX_LISTED_VIOLATIONS`] in row order, and the total.
#[derive(Debug, Clone, Default)]
pub struct Violations {
    items: Vec<Violation>,
    total: u64,
    /// Every row with at least one violation, listed or not.
    rows: HashSet<u64>,
}

impl Violations {
    pub fn push(&mut self, violation: Violation) {
        self.total += 1;
        self.rows.insert(violation.row);
        self.items.push(violation);
        if self.items.len() > 4 * MAX_LISTED_VIOLATIONS {
            self.trim();
        }
    }

    /// Adds the violations found in another batch of the same request.
    pub fn merge(&mut self, other: Violations) {
        self.total += other.total;
        self.rows.extend(other.rows);
        self.items.extend(other.items);
        if self.items.len() > 4 * MAX_LISTED_VIOLATIONS {
            self.trim();
        }
    }

    /// Keeps the earliest rows only.
    fn trim(&mut self) {
        self.items.sort_by_key(|v| v.row);
        self.items.truncate(MAX_LISTED_VIOLATIONS);
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the record at this 1-based request position broke a rule.
    pub fn has_row(&self, row: u64) -> bool {
        self.rows.contains(&row)
    }

    /// How many records broke at least one rule.
    pub fn row_count(&self) -> u64 {
        self.rows.len() as u64
    }

    /// The listed violations, in row order, at most [`MAX_LISTED_VIOLATIONS`].
    pub fn into_listed(mut self) -> Vec<Violation> {
        self.trim();
        self.items
    }
}

/// A failed rule for one value, without its position.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleBreak {
    pub code: &'static str,
    pub message: String,
}

/// Checks one non-null value against a field's constraints (used for schema defaults).
pub fn check_value(value: &Value, rules: &Constraints) -> Result<(), RuleBreak> {
    use std::cmp::Ordering::{Greater, Less};
    if value.is_null() {
        return Ok(());
    }
    storable(value)?;
    if let Some(min) = &rules.min
        && value.compare(min) == Some(Less)
    {
        return Err(RuleBreak {
            code: "min",
            message: format!("{value} is less than the minimum {min}"),
        });
    }
    if let Some(max) = &rules.max
        && value.compare(max) == Some(Greater)
    {
        return Err(RuleBreak {
            code: "max",
            message: format!("{value} is greater than the maximum {max}"),
        });
    }
    if let Some(allowed) = &rules.one_of
        && !allowed.contains(value)
    {
        return Err(RuleBreak {
            code: "one_of",
            message: format!("{value} is not one of {}", list(allowed)),
        });
    }
    if let Value::String(text) = value {
        if let Some(pattern) = &rules.pattern
            && !pattern.regex.is_match(text)
        {
            return Err(RuleBreak {
                code: "pattern",
                message: format!("`{text}` does not match the pattern `{}`", pattern.source),
            });
        }
        if let Some(max) = rules.max_length {
            let len = text.chars().count() as u64;
            if len > max {
                return Err(RuleBreak {
                    code: "max_length",
                    message: format!("is {len} characters long, more than the maximum {max}"),
                });
            }
        }
    }
    Ok(())
}

fn list(values: &[Value]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_json().to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Cells already reported by the decoder (bad type, overflow), so validation does not report them
/// again as missing.
#[derive(Debug, Clone, Default)]
pub struct RejectedCells {
    columns: Vec<Option<HashSet<usize>>>,
}

impl RejectedCells {
    pub fn mark(&mut self, column: usize, row: usize) {
        if self.columns.len() <= column {
            self.columns.resize(column + 1, None);
        }
        self.columns[column]
            .get_or_insert_with(HashSet::new)
            .insert(row);
    }

    fn contains(&self, column: usize, row: usize) -> bool {
        self.columns
            .get(column)
            .and_then(Option::as_ref)
            .is_some_and(|rows| rows.contains(&row))
    }
}

/// Checks every column of `batch` (shaped as `schema`) against the field rules. `first_row` is the
/// 1-based request position of the batch's first row.
pub fn validate_batch(
    schema: &DatasetSchema,
    batch: &RecordBatch,
    first_row: u64,
    rejected: &RejectedCells,
    out: &mut Violations,
) {
    check_batch(schema, batch, first_row, rejected, &mut |v| out.push(v));
}

/// [`validate_batch`], handing each violation to `found` as it is found (for callers that count
/// them their own way, e.g. stored records checked before a migration).
pub fn check_batch(
    schema: &DatasetSchema,
    batch: &RecordBatch,
    first_row: u64,
    rejected: &RejectedCells,
    found: &mut dyn FnMut(Violation),
) {
    for (col, field) in schema.fields.iter().enumerate() {
        let array = batch.column(col);
        let mut report = |row: usize, code: &'static str, message: String| {
            if !rejected.contains(col, row) {
                found(Violation {
                    row: first_row + row as u64,
                    field: Some(field.name.clone()),
                    code,
                    message,
                });
            }
        };
        if field.required && array.null_count() > 0 {
            for row in (0..array.len()).filter(|&r| array.is_null(r)) {
                report(row, "required", "a value is required".to_owned());
            }
        }
        check_storable(field.field_type, array, &mut report);
        let rules = &field.constraints;
        match field.field_type {
            FieldType::Integer => {
                check_primitive::<Int64Type>(field.field_type, array, rules, &mut report)
            }
            FieldType::Float => {
                check_primitive::<Float64Type>(field.field_type, array, rules, &mut report)
            }
            FieldType::Date => {
                check_primitive::<Date32Type>(field.field_type, array, rules, &mut report)
            }
            FieldType::Timestamp => check_primitive::<TimestampMicrosecondType>(
                field.field_type,
                array,
                rules,
                &mut report,
            ),
            FieldType::String => check_strings(array, rules, &mut report),
            FieldType::Boolean | FieldType::Json => {
                check_generic(field.field_type, array, rules, &mut report)
            }
        }
    }
}

/// The first and last day every reader of the stored data can show (0001-01-01 and 9999-12-31,
/// in days from 1970-01-01): RFC 3339 text has four-digit years, and an Arrow `date32` far outside
/// them is stored but cannot be read back.
pub const DATE_RANGE: (i32, i32) = (-719_162, 2_932_896);

/// The same range for timestamps, in microseconds (0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999Z).
pub const TIMESTAMP_RANGE: (i64, i64) = (-62_135_596_800_000_000, 253_402_300_799_999_999);

/// [`check_storable`] for one value (a change's values are checked one at a time).
fn storable(value: &Value) -> Result<(), RuleBreak> {
    let out_of_range = match value {
        Value::Date(day) => !(DATE_RANGE.0..=DATE_RANGE.1).contains(day),
        Value::Timestamp(micros) => !(TIMESTAMP_RANGE.0..=TIMESTAMP_RANGE.1).contains(micros),
        Value::String(text) | Value::Json(text) => {
            return match text.bytes().position(|b| b == 0) {
                Some(at) => Err(RuleBreak {
                    code: "nul_character",
                    message: nul_message(at),
                }),
                None => Ok(()),
            };
        }
        _ => false,
    };
    match out_of_range {
        true => Err(RuleBreak {
            code: "out_of_range",
            message: out_of_range_message(value),
        }),
        false => Ok(()),
    }
}

fn out_of_range_message(value: &Value) -> String {
    format!("{value} is outside the years 1 to 9999 that every reader can read")
}

fn nul_message(at: usize) -> String {
    format!("holds a NUL character (U+0000) at byte {at}, which text may not")
}

/// Refuses values that would not come back as sent: dates and timestamps outside the years
/// 1 to 9999, and text holding NUL characters (PostgreSQL refuses them, C-string tools cut there).
fn check_storable(
    ty: FieldType,
    array: &ArrayRef,
    report: &mut impl FnMut(usize, &'static str, String),
) {
    let out_of_range = |row: usize| out_of_range_message(&Value::from_array(ty, array, row));
    match ty {
        FieldType::Date => {
            if let Some(values) = array.as_primitive_opt::<Date32Type>() {
                let (low, high) = DATE_RANGE;
                for (row, day) in values.iter().enumerate() {
                    if day.is_some_and(|d| d < low || d > high) {
                        report(row, "out_of_range", out_of_range(row));
                    }
                }
            }
        }
        FieldType::Timestamp => {
            if let Some(values) = array.as_primitive_opt::<TimestampMicrosecondType>() {
                let (low, high) = TIMESTAMP_RANGE;
                for (row, micros) in values.iter().enumerate() {
                    if micros.is_some_and(|t| t < low || t > high) {
                        report(row, "out_of_range", out_of_range(row));
                    }
                }
            }
        }
        FieldType::String | FieldType::Json => {
            let Some(values) = array.as_string_opt::<i32>() else {
                return;
            };
            // one pass over all the text; rows only looked at when a NUL is somewhere
            if !values.values().contains(&0) {
                return;
            }
            for (row, text) in values.iter().enumerate() {
                if let Some(at) = text.and_then(|t| t.bytes().position(|b| b == 0)) {
                    report(row, "nul_character", nul_message(at));
                }
            }
        }
        FieldType::Integer | FieldType::Float | FieldType::Boolean => {}
    }
}

/// Converts a bound to the column's native representation, so rows compare without allocation.
trait Native: ArrowPrimitiveType {
    fn native(value: &Value) -> Option<Self::Native>;
}
impl Native for Int64Type {
    fn native(value: &Value) -> Option<i64> {
        if let Value::Integer(v) = value {
            Some(*v)
        } else {
            None
        }
    }
}
impl Native for Float64Type {
    fn native(value: &Value) -> Option<f64> {
        if let Value::Float(v) = value {
            Some(*v)
        } else {
            None
        }
    }
}
impl Native for Date32Type {
    fn native(value: &Value) -> Option<i32> {
        if let Value::Date(v) = value {
            Some(*v)
        } else {
            None
        }
    }
}
impl Native for TimestampMicrosecondType {
    fn native(value: &Value) -> Option<i64> {
        if let Value::Timestamp(v) = value {
            Some(*v)
        } else {
            None
        }
    }
}

fn check_primitive<T: Native>(
    ty: FieldType,
    array: &ArrayRef,
    rules: &Constraints,
    report: &mut impl FnMut(usize, &'static str, String),
) where
    T::Native: PartialOrd,
{
    let min = rules.min.as_ref().and_then(T::native);
    let max = rules.max.as_ref().and_then(T::native);
    let allowed: Option<Vec<T::Native>> = rules
        .one_of
        .as_ref()
        .map(|vs| vs.iter().filter_map(T::native).collect());
    if min.is_none() && max.is_none() && allowed.is_none() {
        return;
    }
    let Some(values) = array.as_primitive_opt::<T>() else {
        return;
    };
    for (row, value) in values.iter().enumerate() {
        let Some(value) = value else { continue };
        let shown = || Value::from_array(ty, array, row);
        if min.is_some_and(|m| value < m) {
            report(
                row,
                "min",
                format!(
                    "{} is less than the minimum {}",
                    shown(),
                    rules
                        .min
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
            );
        } else if max.is_some_and(|m| value > m) {
            report(
                row,
                "max",
                format!(
                    "{} is greater than the maximum {}",
                    shown(),
                    rules
                        .max
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
            );
        } else if let Some(allowed) = &allowed
            && !allowed.contains(&value)
        {
            report(
                row,
                "one_of",
                format!(
                    "{} is not one of {}",
                    shown(),
                    list(rules.one_of.as_deref().unwrap_or_default())
                ),
            );
        }
    }
}

fn check_strings(
    array: &ArrayRef,
    rules: &Constraints,
    report: &mut impl FnMut(usize, &'static str, String),
) {
    if rules.pattern.is_none() && rules.max_length.is_none() && rules.one_of.is_none() {
        return;
    }
    let Some(values) = array.as_string_opt::<i32>() else {
        return;
    };
    let allowed: Option<HashSet<&str>> = rules.one_of.as_ref().map(|vs| {
        vs.iter()
            .filter_map(|v| {
                if let Value::String(s) = v {
                    Some(s.as_str())
                } else {
                    None
                }
            })
            .collect()
    });
    for (row, text) in values.iter().enumerate() {
        let Some(text) = text else { continue };
        if let Some(allowed) = &allowed
            && !allowed.contains(text)
        {
            report(
                row,
                "one_of",
                format!(
                    "`{text}` is not one of {}",
                    list(rules.one_of.as_deref().unwrap_or_default())
                ),
            );
            continue;
        }
        if let Some(max) = rules.max_length
            && text.len() as u64 > max
        {
            let len = text.chars().count() as u64;
            if len > max {
                report(
                    row,
                    "max_length",
                    format!("is {len} characters long, more than the maximum {max}"),
                );
                continue;
            }
        }
        if let Some(pattern) = &rules.pattern
            && !pattern.regex.is_match(text)
        {
            report(
                row,
                "pattern",
                format!("`{text}` does not match the pattern `{}`", pattern.source),
            );
        }
    }
}

fn check_generic(
    ty: FieldType,
    array: &ArrayRef,
    rules: &Constraints,
    report: &mut impl FnMut(usize, &'static str, String),
) {
    if rules.one_of.is_none() {
        return;
    }
    for row in (0..array.len()).filter(|&r| array.is_valid(r)) {
        if let Err(broken) = check_value(&Value::from_array(ty, array, row), rules) {
            report(row, broken.code, broken.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;
    use crate::testing::wells;

    fn batch(periods: Vec<Option<i64>>, names: Vec<&str>) -> RecordBatch {
        let rows = periods.len();
        let schema = wells();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(Int64Array::from(vec![1; rows])),
            Arc::new(StringArray::from(names)),
            Arc::new(TimestampMicrosecondArray::from(periods)),
            Arc::new(Float64Array::from(vec![1.0; rows])),
            Arc::new(StringArray::from(vec![None::<&str>; rows])),
            Arc::new(BooleanArray::from(vec![true; rows])),
            Arc::new(StringArray::from(vec!["{}"; rows])),
        ];
        RecordBatch::try_new(Arc::clone(schema.arrow_schema()), columns).unwrap()
    }

    fn codes(batch: &RecordBatch) -> Vec<(u64, &'static str)> {
        let mut found = Vec::new();
        check_batch(&wells(), batch, 1, &RejectedCells::default(), &mut |v| {
            found.push((v.row, v.code))
        });
        found
    }

    #[test]
    fn timestamps_outside_the_years_1_to_9999_are_refused() {
        let (low, high) = TIMESTAMP_RANGE;
        let periods = vec![Some(low), Some(high), Some(low - 1), Some(high + 1), None];
        let found = codes(&batch(periods, vec!["a"; 5]));
        assert_eq!(found, vec![(3, "out_of_range"), (4, "out_of_range")]);
    }

    #[test]
    fn a_single_value_is_checked_the_same_way() {
        let rules = Constraints::default();
        let refused = |v: Value| check_value(&v, &rules).map_err(|b| b.code);
        assert_eq!(refused(Value::String("a\0b".into())), Err("nul_character"));
        assert_eq!(refused(Value::Date(DATE_RANGE.1 + 1)), Err("out_of_range"));
        assert_eq!(
            refused(Value::Timestamp(TIMESTAMP_RANGE.0 - 1)),
            Err("out_of_range")
        );
        assert_eq!(refused(Value::Timestamp(0)), Ok(()));
    }

    #[test]
    fn text_with_a_nul_character_is_refused() {
        let found = codes(&batch(vec![Some(0); 3], vec!["fine", "bad\0", "ok"]));
        assert_eq!(found, vec![(2, "nul_character")]);
    }
}
