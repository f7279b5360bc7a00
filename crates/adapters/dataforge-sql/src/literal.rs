//! Values as SQL literals, for the few statements that cannot take parameters (a field's default
//! in a column's `DEFAULT`, a migration's `SELECT`, a merge's `COALESCE`): written once for every
//! SQL store, a dialect spelling only timestamps its own way.

use dataforge_domain::value::{FieldType, Value, format_date};

use crate::Dialect;

/// Text as a quoted literal, `'` doubled. A backslash stays itself: both engines read standard
/// strings (PostgreSQL's `standard_conforming_strings`, on by default; DuckDB always). No text
/// here holds NUL, which the domain refuses in records and defaults (PostgreSQL cannot store it);
/// were one to come, it would stay inside the quotes, and either driver refuse the statement
/// whole rather than cut it there.
fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `value` as an SQL literal of its type in `dialect`. Floats and dates are cast from text, so
/// that infinities and NaN read back too.
pub fn literal(dialect: &(impl Dialect + ?Sized), value: &Value) -> String {
    let cast = |text: &str, ty: FieldType| {
        format!(
            "CAST({} AS {})",
            text_literal(text),
            dialect.column_type(ty)
        )
    };
    match value {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => cast(&format!("{f:?}"), FieldType::Float),
        Value::String(s) | Value::Json(s) => text_literal(s),
        Value::Date(days) => cast(&format_date(*days), FieldType::Date),
        Value::Timestamp(micros) => dialect.timestamp_literal(*micros),
    }
}

#[cfg(test)]
mod tests {
    use dataforge_domain::query::BucketUnit;

    use super::*;

    /// An engine with its own names for the types a literal casts to.
    struct Engine;

    impl Dialect for Engine {
        fn placeholder(&self, number: usize) -> String {
            format!("${number}")
        }
        fn column_type(&self, ty: FieldType) -> &'static str {
            match ty {
                FieldType::Float => "F8",
                FieldType::Date => "D",
                _ => "OTHER",
            }
        }
        fn bucket(&self, _: BucketUnit, _: u32, column: &str) -> String {
            column.into()
        }
        fn quantile(&self, expression: &str, _: f64) -> String {
            expression.into()
        }
        fn timestamp_literal(&self, micros: i64) -> String {
            format!("ts({micros})")
        }
        fn converted(&self, column: &str, _: &str) -> String {
            column.into()
        }
    }

    fn text(s: &str) -> String {
        literal(&Engine, &Value::String(s.into()))
    }

    #[test]
    fn quotes_are_doubled_and_backslashes_kept() {
        assert_eq!(text("plain"), "'plain'");
        assert_eq!(text("O'Brien"), "'O''Brien'");
        assert_eq!(text("''"), "''''''");
        assert_eq!(text(r"C:\data\n"), r"'C:\data\n'");
        assert_eq!(text(r"\'"), r"'\'''");
        assert_eq!(text(""), "''");
        assert_eq!(
            literal(&Engine, &Value::Json(r#"{"a":"b'c"}"#.into())),
            r#"'{"a":"b''c"}'"#
        );
    }

    #[test]
    fn a_nul_stays_inside_the_quotes() {
        assert_eq!(text("a\0b"), "'a\0b'");
    }

    #[test]
    fn numbers_and_dates_are_cast_to_the_dialects_types() {
        assert_eq!(literal(&Engine, &Value::Null), "NULL");
        assert_eq!(literal(&Engine, &Value::Boolean(true)), "true");
        assert_eq!(literal(&Engine, &Value::Integer(-42)), "-42");
        assert_eq!(literal(&Engine, &Value::Float(1.5)), "CAST('1.5' AS F8)");
        assert_eq!(literal(&Engine, &Value::Float(3.0)), "CAST('3.0' AS F8)");
        assert_eq!(
            literal(&Engine, &Value::Float(f64::NEG_INFINITY)),
            "CAST('-inf' AS F8)"
        );
        assert_eq!(
            literal(&Engine, &Value::Float(f64::NAN)),
            "CAST('NaN' AS F8)"
        );
        assert_eq!(literal(&Engine, &Value::Date(0)), "CAST('1970-01-01' AS D)");
        assert_eq!(
            literal(&Engine, &Value::Date(-1)),
            "CAST('1969-12-31' AS D)"
        );
    }

    #[test]
    fn timestamps_are_the_dialects_own() {
        assert_eq!(literal(&Engine, &Value::Timestamp(-5)), "ts(-5)");
    }
}
