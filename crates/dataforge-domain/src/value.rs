//! Field types and single values: how a value is read from JSON or from URL text, compared and
//! written back. Bulk data travels as Arrow arrays; a [`Value`] is for keys, filters and bounds.

use std::cmp::Ordering;
use std::fmt;

use arrow_array::TimestampMicrosecondArray;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};

/// The types a field can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit IEEE float.
    Float,
    Boolean,
    Date,
    /// UTC instant with microsecond precision.
    Timestamp,
    /// Any JSON document, kept as its text.
    Json,
}

impl FieldType {
    pub const ALL: [FieldType; 7] = [
        FieldType::String,
        FieldType::Integer,
        FieldType::Float,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Timestamp,
        FieldType::Json,
    ];

    /// The name used in schema files and API answers.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Timestamp => "timestamp",
            FieldType::Json => "json",
        }
    }

    /// A value of this type as a schema file writes it, for hints.
    pub fn example(self) -> &'static str {
        match self {
            FieldType::String => "\"North A\"",
            FieldType::Integer => "42",
            FieldType::Float => "1.5",
            FieldType::Boolean => "true",
            FieldType::Date => "\"2024-01-31\"",
            FieldType::Timestamp => "\"2024-01-31T12:00:00Z\"",
            FieldType::Json => "{ a = 1 }",
        }
    }

    pub fn from_name(name: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The Arrow type a column of this field has in record batches.
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::String | FieldType::Json => DataType::Utf8,
            FieldType::Integer => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::Date => DataType::Date32,
            FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// Whether values have a natural order, so that `min`, `max` and range filters apply.
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::Float | FieldType::Date | FieldType::Timestamp
        )
    }

    /// Whether the field holds text, so that `pattern`, `max_length` and `like` apply.
    pub fn is_text(self) -> bool {
        self == FieldType::String
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    String(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A JSON document's text.
    Json(String),
}

/// Why a value did not fit its field's type; `code` is stable for API clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

impl ValueError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ValueError {
            code,
            message: message.into(),
        }
    }

    fn expected(ty: FieldType, found: impl fmt::Display) -> Self {
        let what = match ty {
            FieldType::String => "a string",
            FieldType::Integer => "a 64-bit integer",
            FieldType::Float => "a number",
            FieldType::Boolean => "true or false",
            FieldType::Date => "a date as YYYY-MM-DD",
            FieldType::Timestamp => "an RFC 3339 timestamp or a date as YYYY-MM-DD",
            FieldType::Json => "a JSON value",
        };
        ValueError::new("type", format!("expected {what}, found {found}"))
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a valid date");

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from(date.signed_duration_since(EPOCH).num_days()).ok()
}

/// Parses an RFC 3339 timestamp, or a plain date meaning midnight UTC, into epoch microseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.timestamp_micros());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0)?;
    Some(midnight.and_utc().timestamp_micros())
}

/// Formats epoch days as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    match EPOCH.checked_add_signed(chrono::TimeDelta::days(i64::from(days))) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

/// Formats epoch microseconds as RFC 3339 in UTC, with a fraction only when there is one.
pub fn format_timestamp(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(instant) => instant.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => micros.to_string(),
    }
}

/// Valid JSON text without the whitespace outside its strings: numbers and strings stay exactly
/// as written, and the value fits on one line of an NDJSON or CSV answer.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

impl Value {
    /// Reads a value from a JSON request body or schema file. JSON `null` is [`Value::Null`].
    pub fn from_json(ty: FieldType, json: &serde_json::Value) -> Result<Value, ValueError> {
        use serde_json::Value as J;
        if json.is_null() {
            return Ok(Value::Null);
        }
        match (ty, json) {
            (FieldType::Json, other) => Ok(Value::Json(other.to_string())),
            (FieldType::String, J::String(s)) => Ok(Value::String(s.clone())),
            (FieldType::Boolean, J::Bool(b)) => Ok(Value::Boolean(*b)),
            (FieldType::Integer, J::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Value::Integer(i)),
                None if n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => Err(
                    ValueError::new("overflow", format!("{n} does not fit in a 64-bit integer")),
                ),
                None => Err(ValueError::expected(ty, format!("the fraction {n}"))),
            },
            (FieldType::Float, J::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Value::Float)
                .ok_or_else(|| {
                    ValueError::new("overflow", format!("{n} does not fit in a 64-bit float"))
                }),
            (FieldType::Date | FieldType::Timestamp, J::String(s)) => Value::parse_text(ty, s),
            (_, other) => Err(ValueError::expected(ty, json_kind(other))),
        }
    }

    /// Reads a value from URL text: a path segment or a filter operand.
    pub fn parse_text(ty: FieldType, text: &str) -> Result<Value, ValueError> {
        let quoted = || format!("`{text}`");
        match ty {
            FieldType::String => Ok(Value::String(text.to_owned())),
            FieldType::Integer => text.parse::<i64>().map(Value::Integer).map_err(|e| {
                if matches!(
                    e.kind(),
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                ) {
                    ValueError::new(
                        "overflow",
                        format!("{} does not fit in a 64-bit integer", quoted()),
                    )
                } else {
                    ValueError::expected(ty, quoted())
                }
            }),
            FieldType::Float => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(ValueError::expected(ty, quoted())),
            },
            FieldType::Boolean => match text {
                "true" => Ok(Value::Boolean(true)),
                "false" => Ok(Value::Boolean(false)),
                _ => Err(ValueError::expected(ty, quoted())),
            },
            FieldType::Date => parse_date(text)
                .map(Value::Date)
                .ok_or_else(|| ValueError::expected(ty, quoted())),
            FieldType::Timestamp => parse_timestamp(text)
                .map(Value::Timestamp)
                .ok_or_else(|| ValueError::expected(ty, quoted())),
            // kept as sent, less whitespace (only checked to be JSON): parsed, a large integer
            // would become a float
            FieldType::Json => serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map(|_| Value::Json(compact_json(text)))
                .map_err(|e| ValueError::new("type", format!("invalid JSON: {e}"))),
        }
    }

    /// The value as API clients see it in JSON.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::Integer(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::String(s) => J::String(s.clone()),
            Value::Date(d) => J::String(format_date(*d)),
            Value::Timestamp(t) => J::String(format_timestamp(*t)),
            Value::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| J::String(text.clone()))
            }
        }
    }

    /// Orders two values of the same type; `None` across types or with null.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(b)),
            (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::String(a), Value::String(b)) | (Value::Json(a), Value::Json(b)) => {
                Some(a.cmp(b))
            }
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Reads row `row` of a column built for a field of type `ty`.
    pub fn from_array(ty: FieldType, array: &ArrayRef, row: usize) -> Value {
        if array.is_null(row) {
            return Value::Null;
        }
        let any = array.as_any();
        let read = || -> Option<Value> {
            Some(match ty {
                FieldType::String => {
                    Value::String(any.downcast_ref::<StringArray>()?.value(row).to_owned())
                }
                FieldType::Json => {
                    Value::Json(any.downcast_ref::<StringArray>()?.value(row).to_owned())
                }
                FieldType::Integer => Value::Integer(any.downcast_ref::<Int64Array>()?.value(row)),
                FieldType::Float => Value::Float(any.downcast_ref::<Float64Array>()?.value(row)),
                FieldType::Boolean => {
                    Value::Boolean(any.downcast_ref::<BooleanArray>()?.value(row))
                }
                FieldType::Date => Value::Date(any.downcast_ref::<Date32Array>()?.value(row)),
                FieldType::Timestamp => {
                    Value::Timestamp(any.downcast_ref::<TimestampMicrosecondArray>()?.value(row))
                }
            })
        };
        read().unwrap_or(Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::String(s) | Value::Json(s) => f.write_str(s),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_strict() {
        assert_eq!(
            Value::from_json(FieldType::Integer, &json!(42)),
            Ok(Value::Integer(42))
        );
        assert_eq!(
            Value::from_json(FieldType::Integer, &json!(1.5))
                .unwrap_err()
                .code,
            "type"
        );
        assert_eq!(
            Value::from_json(FieldType::Integer, &json!("42"))
                .unwrap_err()
                .code,
            "type"
        );
        assert_eq!(
            Value::from_json(FieldType::Integer, &json!(u64::MAX))
                .unwrap_err()
                .code,
            "overflow"
        );
        assert_eq!(
            Value::parse_text(FieldType::Integer, "99999999999999999999")
                .unwrap_err()
                .code,
            "overflow"
        );
        assert_eq!(
            Value::parse_text(FieldType::Integer, "-7"),
            Ok(Value::Integer(-7))
        );
    }

    #[test]
    fn floats_accept_integers() {
        assert_eq!(
            Value::from_json(FieldType::Float, &json!(3)),
            Ok(Value::Float(3.0))
        );
        assert_eq!(
            Value::parse_text(FieldType::Float, "inf").unwrap_err().code,
            "type"
        );
    }

    #[test]
    fn timestamps_accept_rfc3339_and_dates() {
        let midnight = Value::parse_text(FieldType::Timestamp, "2020-01-02").unwrap();
        let explicit = Value::parse_text(FieldType::Timestamp, "2020-01-02T00:00:00Z").unwrap();
        let offset = Value::parse_text(FieldType::Timestamp, "2020-01-02T01:00:00+01:00").unwrap();
        assert_eq!(midnight, explicit);
        assert_eq!(midnight, offset);
        assert_eq!(midnight, Value::Timestamp(1_577_923_200_000_000));
        assert!(Value::parse_text(FieldType::Timestamp, "2020-01-02 10:00").is_err());
        assert_eq!(
            format_timestamp(1_577_923_200_000_000),
            "2020-01-02T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(1_577_923_200_000_001),
            "2020-01-02T00:00:00.000001Z"
        );
    }

    #[test]
    fn dates_round_trip() {
        let d = Value::parse_text(FieldType::Date, "1947-01-01").unwrap();
        assert_eq!(d.to_json(), json!("1947-01-01"));
        assert!(Value::parse_text(FieldType::Date, "1947-02-30").is_err());
    }

    #[test]
    fn json_values_keep_their_text() {
        let v = Value::from_json(FieldType::Json, &json!({"a": [1, 2]})).unwrap();
        assert_eq!(v.to_json(), json!({"a": [1, 2]}));
        assert_eq!(
            Value::from_json(FieldType::Json, &json!(null)),
            Ok(Value::Null)
        );
    }

    #[test]
    fn wrong_json_kinds_are_named() {
        let err = Value::from_json(FieldType::Boolean, &json!("yes")).unwrap_err();
        assert_eq!(err.message, "expected true or false, found a string");
    }
}
