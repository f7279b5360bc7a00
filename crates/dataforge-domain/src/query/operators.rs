//! The filter operators, each defined once: its name, the operand it takes, the field types it
//! applies to and its SQL. The URL parser, the query-body parser, the SQL builder and the API
//! description all read these rows, so that an operator cannot mean one thing in one place and
//! another elsewhere.

use super::{Comparison, Condition};
use crate::value::{FieldType, Value};

/// What an operator takes after its name, in a URL (`field=op.operand`) and in a query body
/// (`{"op": {"field": operand}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// One value: `eq.5`, `{"eq": {"f": 5}}`.
    Value(Comparison),
    /// One or more values: `in.(1,2)`, `{"in": {"f": [1, 2]}}`.
    List,
    /// Two bounds, both included: `between.(1,9)`, `{"between": {"f": [1, 9]}}`.
    Range,
    /// A LIKE pattern (`%` any text, `_` one character; `*` may stand for `%` in a URL).
    Pattern { case_sensitive: bool },
    /// A null test spelled `null` or `notnull`: `is.null`, `{"is": {"f": "notnull"}}`.
    NullWord,
    /// A null test spelled `true` (is null) or `false`: `is_null.true`, `{"is_null": {"f": false}}`,
    /// or a body's shorthand `{"is_null": "f"}`.
    NullFlag,
}

/// The field types an operator applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Every type, json included.
    Any,
    /// Every type but json.
    Scalar,
    /// Types with an order: not json, not boolean.
    Ordered,
    /// Strings.
    Text,
}

/// One filter operator.
#[derive(Debug, PartialEq, Eq)]
pub struct Operator {
    /// Its name in URL filters and query bodies.
    pub name: &'static str,
    pub operand: Operand,
    pub applies: Applies,
    /// Its SQL: `{column}` is the column, `{value}` the next operand (bound), `{values}` every
    /// operand (bound, comma-separated), `{null}` `NULL` or `NOT NULL` for a null test.
    pub sql: &'static str,
    /// What the API description says of it.
    pub meaning: &'static str,
}

const fn row(
    name: &'static str,
    operand: Operand,
    applies: Applies,
    sql: &'static str,
    meaning: &'static str,
) -> Operator {
    Operator {
        name,
        operand,
        applies,
        sql,
        meaning,
    }
}

const EQ: Operator = row(
    "eq",
    Operand::Value(Comparison::Eq),
    Applies::Scalar,
    "{column} = {value}",
    "equal",
);
const NE: Operator = row(
    "ne",
    Operand::Value(Comparison::Ne),
    Applies::Scalar,
    "{column} <> {value}",
    "not equal",
);
const GT: Operator = row(
    "gt",
    Operand::Value(Comparison::Gt),
    Applies::Ordered,
    "{column} > {value}",
    "greater than",
);
const GTE: Operator = row(
    "gte",
    Operand::Value(Comparison::Gte),
    Applies::Ordered,
    "{column} >= {value}",
    "greater than or equal",
);
const LT: Operator = row(
    "lt",
    Operand::Value(Comparison::Lt),
    Applies::Ordered,
    "{column} < {value}",
    "less than",
);
const LTE: Operator = row(
    "lte",
    Operand::Value(Comparison::Lte),
    Applies::Ordered,
    "{column} <= {value}",
    "less than or equal",
);
const IN: Operator = row(
    "in",
    Operand::List,
    Applies::Scalar,
    "{column} IN ({values})",
    "one of a list, `in.(a,b)`",
);
const BETWEEN: Operator = row(
    "between",
    Operand::Range,
    Applies::Ordered,
    "{column} BETWEEN {value} AND {value}",
    "within two bounds, both included, `between.(low,high)`",
);
const LIKE: Operator = row(
    "like",
    Operand::Pattern {
        case_sensitive: true,
    },
    Applies::Text,
    "{column} LIKE {value}",
    "SQL pattern, case-sensitive",
);
const ILIKE: Operator = row(
    "ilike",
    Operand::Pattern {
        case_sensitive: false,
    },
    Applies::Text,
    "{column} ILIKE {value}",
    "SQL pattern, case-insensitive",
);
const IS: Operator = row(
    "is",
    Operand::NullWord,
    Applies::Any,
    "{column} IS {null}",
    "null test, `is.null` or `is.notnull`",
);
const IS_NULL: Operator = row(
    "is_null",
    Operand::NullFlag,
    Applies::Any,
    "{column} IS {null}",
    "null test, `is_null.true` or `is_null.false`",
);

/// Every filter operator, in the order errors and the API description list them.
pub const OPERATORS: [&Operator; 12] = [
    &EQ, &NE, &GT, &GTE, &LT, &LTE, &IN, &BETWEEN, &LIKE, &ILIKE, &IS, &IS_NULL,
];

/// The operator named `name`.
pub fn operator(name: &str) -> Option<&'static Operator> {
    OPERATORS.into_iter().find(|op| op.name == name)
}

/// Every operator's name, comma-separated (for error messages).
pub(crate) fn operator_names() -> String {
    OPERATORS.map(|op| op.name).join(", ")
}

/// The operators that apply to a field of type `ty` (an API description lists them).
pub fn operators_for(ty: FieldType) -> Vec<&'static str> {
    OPERATORS
        .into_iter()
        .filter(|op| op.fits(ty).is_ok())
        .map(|op| op.name)
        .collect()
}

impl Operator {
    /// Whether the operator applies to a field of type `ty`; the reason it does not otherwise.
    pub fn fits(&self, ty: FieldType) -> Result<(), String> {
        match self.applies {
            Applies::Any => Ok(()),
            _ if ty == FieldType::Json => {
                Err("does not apply to json fields; only `is` and `is_null` do".into())
            }
            Applies::Scalar => Ok(()),
            Applies::Ordered if ty == FieldType::Boolean => {
                Err("does not apply to booleans; use eq or ne".into())
            }
            Applies::Ordered => Ok(()),
            Applies::Text if ty.is_text() => Ok(()),
            Applies::Text => Err("applies to string fields only".into()),
        }
    }
}

impl Condition {
    /// The operator whose SQL renders this condition (a null test by `is`).
    pub fn operator(&self) -> &'static Operator {
        match self {
            Condition::Compare(Comparison::Eq, _) => &EQ,
            Condition::Compare(Comparison::Ne, _) => &NE,
            Condition::Compare(Comparison::Gt, _) => &GT,
            Condition::Compare(Comparison::Gte, _) => &GTE,
            Condition::Compare(Comparison::Lt, _) => &LT,
            Condition::Compare(Comparison::Lte, _) => &LTE,
            Condition::In(_) => &IN,
            Condition::Between(..) => &BETWEEN,
            Condition::Like(_) => &LIKE,
            Condition::ILike(_) => &ILIKE,
            Condition::IsNull | Condition::IsNotNull => &IS,
        }
    }

    /// The values the condition compares with, in the order its SQL binds them (patterns as
    /// strings; none for a null test).
    pub fn operands(&self) -> Vec<Value> {
        match self {
            Condition::Compare(_, value) => vec![value.clone()],
            Condition::In(values) => values.clone(),
            Condition::Between(low, high) => vec![low.clone(), high.clone()],
            Condition::Like(pattern) | Condition::ILike(pattern) => {
                vec![Value::String(pattern.clone())]
            }
            Condition::IsNull | Condition::IsNotNull => Vec::new(),
        }
    }

    /// The SQL null test's words: `NULL` or `NOT NULL` (`NULL` for other conditions).
    pub fn null_words(&self) -> &'static str {
        match self {
            Condition::IsNotNull => "NOT NULL",
            _ => "NULL",
        }
    }

    /// A null test: `is_null` true for null, false for not null.
    pub(crate) fn null_test(is_null: bool) -> Condition {
        if is_null {
            Condition::IsNull
        } else {
            Condition::IsNotNull
        }
    }

    /// The condition an operand-taking operator makes of its parsed values, when it has the
    /// number of values the operator needs; the message otherwise.
    pub(crate) fn of_values(operand: Operand, mut values: Vec<Value>) -> Result<Condition, String> {
        match operand {
            Operand::Value(comparison) if values.len() == 1 => {
                Ok(Condition::Compare(comparison, values.remove(0)))
            }
            Operand::List if !values.is_empty() => Ok(Condition::In(values)),
            Operand::List => Err("needs at least one value".into()),
            Operand::Range => match <[Value; 2]>::try_from(values) {
                Ok([low, high]) => Ok(Condition::Between(low, high)),
                Err(_) => Err("takes two values, low and high".into()),
            },
            _ => Err("takes one value".into()),
        }
    }

    /// A pattern condition.
    pub(crate) fn pattern(case_sensitive: bool, pattern: String) -> Condition {
        if case_sensitive {
            Condition::Like(pattern)
        } else {
            Condition::ILike(pattern)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, op) in OPERATORS.iter().enumerate() {
            assert_eq!(operator(op.name), Some(*op));
            assert!(OPERATORS[..i].iter().all(|o| o.name != op.name));
        }
        assert_eq!(operator("near"), None);
    }

    #[test]
    fn every_condition_renders_by_the_row_that_parses_it() {
        let one = Value::Integer(1);
        for (condition, name) in [
            (Condition::Compare(Comparison::Eq, one.clone()), "eq"),
            (Condition::Compare(Comparison::Lte, one.clone()), "lte"),
            (Condition::In(vec![one.clone()]), "in"),
            (Condition::Between(one.clone(), one.clone()), "between"),
            (Condition::Like("a%".into()), "like"),
            (Condition::ILike("a%".into()), "ilike"),
            (Condition::IsNull, "is"),
            (Condition::IsNotNull, "is"),
        ] {
            assert_eq!(condition.operator().name, name, "{condition:?}");
            let placeholders = condition.operator().sql.matches("{value}").count();
            let values = condition.operands().len();
            assert!(
                placeholders == values || condition.operator().sql.contains("{values}"),
                "{condition:?}: {placeholders} placeholders for {values} values"
            );
        }
    }

    #[test]
    fn types_decide_which_operators_apply() {
        assert_eq!(operators_for(FieldType::Json), ["is", "is_null"]);
        assert!(!operators_for(FieldType::Boolean).contains(&"gt"));
        assert!(operators_for(FieldType::Boolean).contains(&"in"));
        assert!(operators_for(FieldType::String).contains(&"ilike"));
        assert!(!operators_for(FieldType::Integer).contains(&"like"));
        assert_eq!(operators_for(FieldType::String).len(), OPERATORS.len());
    }
}
