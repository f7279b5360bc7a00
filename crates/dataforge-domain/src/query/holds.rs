//! A predicate evaluated on one record in memory, with SQL's meaning (a comparison with null is
//! unknown, and an unknown row is not selected), so that a rule checked on a written record and
//! the same rule ANDed into a read agree.

use std::cmp::Ordering;

use super::{Comparison, Condition, Predicate};
use crate::value::Value;

impl Predicate {
    /// Whether the record whose field values `value_of` gives (by field position) is selected.
    pub fn holds(&self, value_of: &dyn Fn(usize) -> Value) -> bool {
        self.truth(value_of) == Some(true)
    }

    /// Three-valued: `None` is SQL's unknown.
    fn truth(&self, value_of: &dyn Fn(usize) -> Value) -> Option<bool> {
        match self {
            Predicate::Filter(filter) => filter.condition.truth(&value_of(filter.field)),
            // a AND b is NOT (NOT a OR NOT b), in three values as in two
            Predicate::And(terms) => {
                or(terms.iter().map(|term| term.truth(value_of).map(|t| !t))).map(|t| !t)
            }
            Predicate::Or(terms) => or(terms.iter().map(|term| term.truth(value_of))),
            Predicate::Not(term) => term.truth(value_of).map(|t| !t),
        }
    }
}

impl Predicate {
    /// The predicate with the filters on fields `known` gives a value for decided, leaving a
    /// predicate over the other fields: what a record must still satisfy once those fields take
    /// those values (an update's new values against a rule).
    pub fn with_known(&self, known: &dyn Fn(usize) -> Option<Value>) -> Predicate {
        let decided = |truth: bool| match truth {
            true => Predicate::And(Vec::new()),
            false => Predicate::Or(Vec::new()),
        };
        match self {
            Predicate::Filter(filter) => match known(filter.field) {
                Some(value) => decided(filter.condition.truth(&value) == Some(true)),
                None => self.clone(),
            },
            Predicate::And(terms) => {
                let terms: Vec<Predicate> = terms.iter().map(|t| t.with_known(known)).collect();
                match terms.iter().any(Predicate::is_never) {
                    true => decided(false),
                    false => Predicate::And(terms.into_iter().filter(|t| !t.is_always()).collect()),
                }
            }
            Predicate::Or(terms) => {
                let terms: Vec<Predicate> = terms.iter().map(|t| t.with_known(known)).collect();
                match terms.iter().any(Predicate::is_always) {
                    true => decided(true),
                    false => Predicate::Or(terms.into_iter().filter(|t| !t.is_never()).collect()),
                }
            }
            // NOT of a decided term is decided the other way; of an open one stays open
            Predicate::Not(term) => match term.with_known(known) {
                t if t.is_always() => decided(false),
                t if t.is_never() => decided(true),
                t => Predicate::Not(Box::new(t)),
            },
        }
    }

    /// Whether the predicate holds for no row (an empty OR).
    pub fn is_never(&self) -> bool {
        matches!(self, Predicate::Or(terms) if terms.iter().all(Predicate::is_never))
    }
}

/// SQL's OR over three-valued terms: true if any is true, else unknown if any is unknown.
fn or(terms: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    let mut result = Some(false);
    for truth in terms {
        match truth {
            Some(true) => return Some(true),
            None => result = None,
            Some(false) => {}
        }
    }
    result
}

impl Condition {
    fn truth(&self, value: &Value) -> Option<bool> {
        match self {
            Condition::IsNull => Some(value.is_null()),
            Condition::IsNotNull => Some(!value.is_null()),
            _ if value.is_null() => None,
            Condition::Compare(comparison, operand) => {
                let order = order(value, operand)?;
                Some(match comparison {
                    Comparison::Eq => order == Ordering::Equal,
                    Comparison::Ne => order != Ordering::Equal,
                    Comparison::Gt => order == Ordering::Greater,
                    Comparison::Gte => order != Ordering::Less,
                    Comparison::Lt => order == Ordering::Less,
                    Comparison::Lte => order != Ordering::Greater,
                })
            }
            Condition::In(items) => or(items
                .iter()
                .map(|item| order(value, item).map(|o| o == Ordering::Equal))),
            Condition::Between(low, high) => Some(
                order(value, low)? != Ordering::Less && order(value, high)? != Ordering::Greater,
            ),
            Condition::Like(pattern) => text(value).map(|t| like(pattern, t)),
            Condition::ILike(pattern) => {
                text(value).map(|t| like(&pattern.to_lowercase(), &t.to_lowercase()))
            }
        }
    }
}

/// Orders a stored value against an operand, an integer operand of a float field included.
fn order(value: &Value, operand: &Value) -> Option<Ordering> {
    match (value, operand) {
        (Value::Float(a), Value::Integer(b)) => a.partial_cmp(&(*b as f64)),
        (Value::Integer(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
        _ => value.compare(operand),
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// SQL LIKE: `%` any run of characters, `_` one character, everything else itself.
fn like(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // the classic two-pointer match with backtracking to the last `%`
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
            }
            Some('_') => (p, t) = (p + 1, t + 1),
            Some(c) if *c == text[t] => (p, t) = (p + 1, t + 1),
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    (p, t) = (sp + 1, st + 1);
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Filter;

    fn on(condition: Condition) -> Predicate {
        Predicate::Filter(Filter {
            field: 0,
            condition,
        })
    }

    fn holds(predicate: &Predicate, value: Value) -> bool {
        predicate.holds(&|_| value.clone())
    }

    #[test]
    fn comparisons_follow_sql_including_null() {
        let gt = on(Condition::Compare(Comparison::Gt, Value::Integer(5)));
        assert!(holds(&gt, Value::Integer(6)));
        assert!(!holds(&gt, Value::Integer(5)));
        assert!(!holds(&gt, Value::Null));
        // NOT of unknown is unknown: a null is selected by neither a rule nor its negation
        assert!(!holds(&Predicate::Not(Box::new(gt.clone())), Value::Null));
        assert!(holds(&Predicate::Not(Box::new(gt)), Value::Integer(1)));
        let float = on(Condition::Compare(Comparison::Lte, Value::Integer(2)));
        assert!(holds(&float, Value::Float(2.0)));
        assert!(holds(&on(Condition::IsNull), Value::Null));
    }

    #[test]
    fn lists_ranges_and_patterns() {
        let listed = on(Condition::In(vec![Value::Integer(1), Value::Integer(3)]));
        assert!(holds(&listed, Value::Integer(3)));
        assert!(!holds(&listed, Value::Integer(2)));
        let between = on(Condition::Between(Value::Integer(1), Value::Integer(3)));
        assert!(holds(&between, Value::Integer(1)) && holds(&between, Value::Integer(3)));
        assert!(!holds(&between, Value::Integer(4)));
        for (pattern, text, expected) in [
            ("W%", "Well", true),
            ("%ll", "Well", true),
            ("W_ll", "Well", true),
            ("W_l", "Well", false),
            ("%e%l%", "Well", true),
            ("a%b%c", "aXbYcZ", false),
            ("", "", true),
        ] {
            assert_eq!(like(pattern, text), expected, "{pattern} ~ {text}");
        }
        assert!(holds(
            &on(Condition::ILike("w%".into())),
            Value::String("WELL".into())
        ));
    }

    #[test]
    fn known_values_decide_their_filters_and_leave_the_rest() {
        let a = Predicate::Filter(Filter {
            field: 0,
            condition: Condition::Compare(Comparison::Eq, Value::Integer(1)),
        });
        let b = Predicate::Filter(Filter {
            field: 1,
            condition: Condition::Compare(Comparison::Eq, Value::Integer(2)),
        });
        let rule = Predicate::Or(vec![a.clone(), Predicate::And(vec![b.clone()])]);
        let field_0 = |v: i64| move |f: usize| (f == 0).then_some(Value::Integer(v));
        // field 0 set to 1: the rule holds whatever field 1 is
        assert!(rule.with_known(&field_0(1)).is_always());
        // field 0 set to 5: the record must still have field 1 = 2
        assert_eq!(
            rule.with_known(&field_0(5)),
            Predicate::Or(vec![Predicate::And(vec![b.clone()])])
        );
        // both set and both wrong: never
        let both = |f: usize| Some(Value::Integer(if f == 0 { 5 } else { 9 }));
        assert!(rule.with_known(&both).is_never());
        assert!(
            Predicate::Not(Box::new(a))
                .with_known(&field_0(1))
                .is_never()
        );
        assert_eq!(b.with_known(&|_| None), b);
    }

    #[test]
    fn and_or_combine_three_valued() {
        let one = on(Condition::Compare(Comparison::Eq, Value::Integer(1)));
        let null = on(Condition::IsNull);
        let and = Predicate::And(vec![one.clone(), null.clone()]);
        assert!(!holds(&and, Value::Integer(1)));
        let or = Predicate::Or(vec![one, null]);
        assert!(holds(&or, Value::Integer(1)) && holds(&or, Value::Null));
        assert!(holds(&Predicate::And(vec![]), Value::Null));
    }
}
