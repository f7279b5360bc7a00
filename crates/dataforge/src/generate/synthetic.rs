//! Synthetic records for any dataset, from its schema alone: every value has the field's type and
//! keeps its rules (`min`/`max`, `one_of`, `pattern`, `max_length`), keys are unique, optional
//! fields are null one row in ten, and row `i` is always the same (so files of consecutive ranges
//! hold distinct keys and two runs write the same bytes).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use dataforge_domain::schema::{DatasetSchema, FieldSchema};
use dataforge_domain::validate::check_value;
use dataforge_domain::value::{FieldType, Value};

/// A reproducible pseudo-random number in [0, 1) from `i` and a stream number (SplitMix64).
pub fn unit(i: u64, stream: u64) -> f64 {
    let mut z = i
        .wrapping_mul(4)
        .wrapping_add(stream)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

const DAY_MICROS: i64 = 86_400_000_000;
/// Distinct values a float field takes (`lo + (hi - lo) * n / FLOAT_STEPS`).
const FLOAT_STEPS: u64 = 1_000_000;
/// 2000-01-01: where dates and timestamps start when a field sets no `min`.
const Y2K_DAYS: i64 = 10_957;

/// How many distinct values a field can take, when that is few enough to matter for keys.
fn cardinality(field: &FieldSchema) -> Option<u64> {
    let rules = &field.constraints;
    if let Some(allowed) = &rules.one_of {
        return Some(allowed.len() as u64);
    }
    // the same bounds `pick` wraps within, its defaults for a missing `min` included
    let span = |lo: i64, hi: i64| u64::try_from(hi.checked_sub(lo)?).ok()?.checked_add(1);
    let (min, max) = (rules.min.as_ref(), rules.max.as_ref());
    match field.field_type {
        FieldType::Boolean => Some(2),
        FieldType::Float => Some(FLOAT_STEPS),
        FieldType::Integer => span(integer(min).unwrap_or(1), integer(max)?),
        FieldType::Date => span(date(min).unwrap_or(Y2K_DAYS), date(max)?),
        FieldType::Timestamp => {
            let lo = timestamp(min).unwrap_or(Y2K_DAYS * DAY_MICROS);
            span(
                lo.div_euclid(DAY_MICROS),
                timestamp(max)?.div_euclid(DAY_MICROS),
            )
        }
        FieldType::String | FieldType::Json => None,
    }
}

/// The generator of one dataset's records.
pub struct Synthetic {
    schema: Arc<DatasetSchema>,
    /// For each key field (in key order), how many values it cycles through (`None`: all the
    /// remaining rows, for the first key field without a bound).
    key_bases: Vec<(usize, Option<u64>)>,
    /// Distinct keys there are, when every key field is bounded.
    capacity: Option<u64>,
}

impl Synthetic {
    pub fn new(schema: Arc<DatasetSchema>) -> Synthetic {
        let mut unbounded_seen = false;
        let mut key_bases = Vec::new();
        let mut capacity = Some(1u64);
        for &k in &schema.primary_key {
            match cardinality(&schema.fields[k]) {
                Some(n) if !unbounded_seen => {
                    capacity = capacity.and_then(|c| c.checked_mul(n));
                    key_bases.push((k, Some(n)));
                }
                _ if !unbounded_seen => {
                    unbounded_seen = true;
                    capacity = None;
                    key_bases.push((k, None));
                }
                _ => key_bases.push((k, Some(1))),
            }
        }
        Synthetic {
            schema,
            key_bases,
            capacity,
        }
    }

    /// Refuses a range of rows past the number of distinct keys the key fields' rules allow.
    pub fn check_range(&self, end: u64) -> Result<(), String> {
        match self.capacity {
            Some(capacity) if end > capacity => Err(format!(
                "the key of `{}` can take only {capacity} distinct values under its fields' rules; ask for rows below that",
                self.schema.name
            )),
            _ => Ok(()),
        }
    }

    /// Rows `start..end` as one record batch.
    pub fn batch(&self, start: u64, end: u64) -> Result<RecordBatch, String> {
        let columns = self
            .schema
            .fields
            .iter()
            .enumerate()
            .map(|(f, field)| {
                let values = (start..end)
                    .map(|i| self.value(f, field, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(column(field.field_type, &values))
            })
            .collect::<Result<Vec<_>, String>>()?;
        RecordBatch::try_new(Arc::clone(self.schema.arrow_schema()), columns)
            .map_err(|e| e.to_string())
    }

    fn value(&self, f: usize, field: &FieldSchema, i: u64) -> Result<Value, String> {
        if let Some(digit) = self.key_digit(f, i) {
            return pick(field, digit, i);
        }
        let stream = f as u64 + 8;
        if !field.required && field.default.is_none() && unit(i, stream + 1000) < 0.1 {
            return Ok(Value::Null);
        }
        // dates spread over a century, other values over a million steps
        let steps = match field.field_type {
            FieldType::Date | FieldType::Timestamp => 36_525.0,
            _ => 1_000_000.0,
        };
        let spread = (unit(i, stream) * steps) as u64;
        pick(field, spread, i)
    }

    /// The position of row `i` among the values of key field `f` (mixed radix over the key).
    fn key_digit(&self, f: usize, i: u64) -> Option<u64> {
        let mut rest = i;
        for &(k, base) in &self.key_bases {
            let digit = match base {
                Some(n) => rest % n.max(1),
                None => rest,
            };
            if k == f {
                return Some(digit);
            }
            rest = match base {
                Some(n) => rest / n.max(1),
                None => 0,
            };
        }
        None
    }
}

/// The `n`th value of a field (wrapping within its bounds), checked against its rules.
fn pick(field: &FieldSchema, n: u64, i: u64) -> Result<Value, String> {
    let rules = &field.constraints;
    if let Some(allowed) = &rules.one_of {
        return Ok(allowed[(n % allowed.len() as u64) as usize].clone());
    }
    let within = |lo: i64, hi: Option<i64>| -> i64 {
        match hi.and_then(|hi| u64::try_from(hi.checked_sub(lo)?).ok()?.checked_add(1)) {
            Some(span) => lo + (n % span) as i64,
            None => lo.saturating_add(n as i64),
        }
    };
    let (min, max) = (rules.min.as_ref(), rules.max.as_ref());
    let value = match field.field_type {
        FieldType::Integer => Value::Integer(within(integer(min).unwrap_or(1), integer(max))),
        FieldType::Float => {
            let lo = float(min).unwrap_or(0.0);
            let hi = float(max).unwrap_or(lo + 1000.0);
            Value::Float(lo + (hi - lo) * (n % FLOAT_STEPS) as f64 / FLOAT_STEPS as f64)
        }
        FieldType::Boolean => Value::Boolean(n % 2 == 1),
        FieldType::Date => {
            let days = within(date(min).unwrap_or(Y2K_DAYS), date(max));
            Value::Date(i32::try_from(days).map_err(|_| "date out of range".to_owned())?)
        }
        FieldType::Timestamp => {
            let lo = timestamp(min).unwrap_or(Y2K_DAYS * DAY_MICROS);
            let days = within(
                lo.div_euclid(DAY_MICROS),
                timestamp(max).map(|t| t.div_euclid(DAY_MICROS)),
            );
            Value::Timestamp((days * DAY_MICROS).max(lo))
        }
        FieldType::Json => Value::Json(format!("{{\"n\":{i}}}")),
        FieldType::String => return text(field, n),
    };
    check_value(&value, rules)
        .map(|()| value)
        .map_err(|e| format!("cannot generate field `{}`: {}", field.name, e.message))
}

/// A string for position `n`: the first of a few shapes that keeps the field's rules.
fn text(field: &FieldSchema, n: u64) -> Result<Value, String> {
    let name = &field.name;
    let letters = {
        let (mut k, mut s) = (n, String::new());
        loop {
            s.insert(0, char::from(b'A' + (k % 26) as u8));
            k /= 26;
            if k == 0 {
                break s;
            }
        }
    };
    let shapes = [
        format!("{}-{n}", name.to_uppercase()),
        format!("{name}-{n}"),
        n.to_string(),
        letters.clone(),
        letters.to_lowercase(),
    ];
    shapes
        .into_iter()
        .map(Value::String)
        .find(|v| check_value(v, &field.constraints).is_ok())
        .ok_or_else(|| {
            format!(
                "cannot generate values for field `{name}`: no generated shape (NAME-1, 1, ABC) keeps its pattern and max_length; give it `one_of`"
            )
        })
}

fn integer(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Integer(i)) => Some(*i),
        _ => None,
    }
}
fn float(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Integer(i)) => Some(*i as f64),
        _ => None,
    }
}
fn date(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Date(d)) => Some(i64::from(*d)),
        _ => None,
    }
}
fn timestamp(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Timestamp(t)) => Some(*t),
        _ => None,
    }
}

/// An Arrow column of one field's values.
fn column(ty: FieldType, values: &[Value]) -> ArrayRef {
    macro_rules! build {
        ($builder:expr, $variant:ident) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    Value::$variant(x) => b.append_value(x.clone()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match ty {
        FieldType::String => build!(StringBuilder::new(), String),
        FieldType::Json => build!(StringBuilder::new(), Json),
        FieldType::Integer => build!(Int64Builder::new(), Integer),
        FieldType::Float => build!(Float64Builder::new(), Float),
        FieldType::Boolean => build!(BooleanBuilder::new(), Boolean),
        FieldType::Date => build!(Date32Builder::new(), Date),
        FieldType::Timestamp => build!(TimestampMicrosecondBuilder::new(), Timestamp),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use dataforge_domain::validate::check_value;

    use super::*;

    fn registry() -> Arc<DatasetSchema> {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = dataforge_schema_toml::load_catalog(&shipped).unwrap();
        Arc::clone(catalog.get("well_registry").unwrap())
    }

    #[test]
    fn records_keep_every_rule_and_keys_are_unique() {
        let schema = registry();
        let generator = Synthetic::new(Arc::clone(&schema));
        let batch = generator.batch(0, 2000).unwrap();
        let mut keys = HashSet::new();
        let mut nulls = 0;
        for row in 0..batch.num_rows() {
            let values: Vec<Value> = schema
                .fields
                .iter()
                .enumerate()
                .map(|(f, field)| Value::from_array(field.field_type, batch.column(f), row))
                .collect();
            for (field, value) in schema.fields.iter().zip(&values) {
                if value.is_null() {
                    assert!(!field.required, "{} is required", field.name);
                    nulls += 1;
                } else {
                    check_value(value, &field.constraints)
                        .unwrap_or_else(|e| panic!("{}: {}", field.name, e.message));
                }
            }
            let key: Vec<String> = schema
                .primary_key
                .iter()
                .map(|&k| values[k].to_string())
                .collect();
            assert!(keys.insert(key), "row {row} repeats a key");
        }
        assert!(nulls > 0, "optional fields are null in some rows");
    }

    #[test]
    fn a_row_is_the_same_in_any_range() {
        let generator = Synthetic::new(registry());
        let whole = generator.batch(0, 100).unwrap();
        let part = generator.batch(40, 60).unwrap();
        assert_eq!(whole.slice(40, 20), part);
        let other = generator.batch(60, 80).unwrap();
        assert_ne!(whole.slice(40, 20), other);
    }

    #[test]
    fn bounded_keys_say_how_many_rows_there_can_be() {
        let draft = dataforge_domain::testing::dataset(
            "w",
            vec![
                {
                    let mut f = dataforge_domain::testing::field("level", "string");
                    f.one_of = Some(dataforge_domain::schema::Located::new(
                        vec!["low".into(), "high".into()],
                        None,
                    ));
                    f
                },
                {
                    let mut f = dataforge_domain::testing::field("slot", "integer");
                    f.min = Some(dataforge_domain::schema::Located::new(1.into(), None));
                    f.max = Some(dataforge_domain::schema::Located::new(3.into(), None));
                    f
                },
            ],
            &["level", "slot"],
        );
        let catalog = dataforge_domain::schema::build_catalog(&[draft]).unwrap();
        let generator = Synthetic::new(Arc::clone(catalog.get("w").unwrap()));
        assert_eq!(generator.check_range(6), Ok(()));
        let refused = generator.check_range(7).unwrap_err();
        assert!(refused.contains("only 6 distinct values"), "{refused}");
    }
}
