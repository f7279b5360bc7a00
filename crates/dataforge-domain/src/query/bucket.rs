//! Time buckets of aggregates: `field:unit` or `field:Nunit` (`production_period:month`,
//! `measured_at:15minute`), checked against the field's type.

use super::QueryError;
use crate::value::FieldType;

/// A calendar or clock unit that dates and timestamps are truncated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketUnit {
    Minute,
    Hour,
    Day,
    /// Weeks start on Monday (ISO 8601).
    Week,
    Month,
    Quarter,
    Year,
}

impl BucketUnit {
    const ALL: [(&'static str, BucketUnit); 7] = [
        ("minute", BucketUnit::Minute),
        ("hour", BucketUnit::Hour),
        ("day", BucketUnit::Day),
        ("week", BucketUnit::Week),
        ("month", BucketUnit::Month),
        ("quarter", BucketUnit::Quarter),
        ("year", BucketUnit::Year),
    ];

    pub fn name(self) -> &'static str {
        BucketUnit::ALL
            .iter()
            .find(|(_, u)| *u == self)
            .map(|(n, _)| *n)
            .unwrap_or("day")
    }

    /// The units a field of type `ty` may be bucketed by (none but for dates and timestamps).
    pub fn names_for(ty: FieldType) -> Vec<&'static str> {
        BucketUnit::ALL
            .iter()
            .filter(|(_, unit)| match ty {
                FieldType::Timestamp => true,
                FieldType::Date => !unit.within_a_day(),
                _ => false,
            })
            .map(|(name, _)| *name)
            .collect()
    }

    /// Units shorter than a day only make sense for timestamps.
    fn within_a_day(self) -> bool {
        matches!(self, BucketUnit::Minute | BucketUnit::Hour)
    }
}

/// A bucket: `count` consecutive `unit`s. Multiples are counted from a fixed origin (see the
/// storage adapter), so that the same instant always falls in the same bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub unit: BucketUnit,
    pub count: u32,
}

/// The largest multiple of a unit a bucket may be (10,000 minutes is about a week).
pub const MAX_BUCKET_COUNT: u32 = 10_000;

impl Bucket {
    /// Its name as written: `month`, `15minute`.
    pub fn name(self) -> String {
        match self.count {
            1 => self.unit.name().to_owned(),
            n => format!("{n}{}", self.unit.name()),
        }
    }

    /// Parses `unit` or `Nunit` for a field of type `ty`, with errors at `at`.
    pub(crate) fn parse(
        at: &str,
        text: &str,
        field: &str,
        ty: FieldType,
    ) -> Result<Bucket, QueryError> {
        let units = || {
            BucketUnit::ALL
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (count, unit) = text.split_at(digits);
        let unit = BucketUnit::ALL
            .iter()
            .find(|(n, _)| *n == unit)
            .map(|(_, u)| *u)
            .ok_or_else(|| {
                QueryError::new(
                    at,
                    format!(
                        "unknown bucket `{text}`; buckets: {}, each optionally a multiple (e.g. `15minute`, `6hour`)",
                        units()
                    ),
                )
            })?;
        let count = match count {
            "" => 1,
            digits => digits
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_BUCKET_COUNT).contains(n))
                .ok_or_else(|| {
                    QueryError::new(
                        at,
                        format!("the multiple in `{text}` must be from 1 to {MAX_BUCKET_COUNT}"),
                    )
                })?,
        };
        if unit.within_a_day() && ty != FieldType::Timestamp {
            return Err(QueryError::new(
                at,
                format!(
                    "`{}` buckets apply to timestamp fields; field `{field}` is {ty}",
                    unit.name()
                ),
            ));
        }
        Ok(Bucket { unit, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, ty: FieldType) -> Result<Bucket, QueryError> {
        Bucket::parse("bucket", text, "t", ty)
    }

    #[test]
    fn the_units_listed_for_a_type_are_those_it_parses() {
        for ty in [FieldType::Date, FieldType::Timestamp] {
            for (name, _) in BucketUnit::ALL {
                let listed = BucketUnit::names_for(ty).contains(&name);
                assert_eq!(listed, parse(name, ty).is_ok(), "{name} on {ty}");
            }
        }
        assert!(BucketUnit::names_for(FieldType::Integer).is_empty());
        assert_eq!(BucketUnit::names_for(FieldType::Date).len(), 5);
    }

    #[test]
    fn units_and_multiples() {
        for (text, unit, count) in [
            ("minute", BucketUnit::Minute, 1),
            ("15minute", BucketUnit::Minute, 15),
            ("6hour", BucketUnit::Hour, 6),
            ("day", BucketUnit::Day, 1),
            ("2week", BucketUnit::Week, 2),
            ("3month", BucketUnit::Month, 3),
            ("2quarter", BucketUnit::Quarter, 2),
            ("10year", BucketUnit::Year, 10),
            ("01hour", BucketUnit::Hour, 1),
        ] {
            let bucket = parse(text, FieldType::Timestamp).unwrap();
            assert_eq!((bucket.unit, bucket.count), (unit, count), "{text}");
        }
        assert_eq!(
            parse("15minute", FieldType::Timestamp).unwrap().name(),
            "15minute"
        );
        assert_eq!(parse("month", FieldType::Date).unwrap().name(), "month");
    }

    #[test]
    fn bad_buckets_say_why() {
        for (text, ty, expected) in [
            (
                "fortnight",
                FieldType::Timestamp,
                "unknown bucket `fortnight`",
            ),
            ("15", FieldType::Timestamp, "unknown bucket `15`"),
            ("minute15", FieldType::Timestamp, "unknown bucket"),
            ("0hour", FieldType::Timestamp, "from 1 to 10000"),
            ("10001minute", FieldType::Timestamp, "from 1 to 10000"),
            ("99999999999day", FieldType::Timestamp, "from 1 to 10000"),
            ("hour", FieldType::Date, "apply to timestamp fields"),
            ("30minute", FieldType::Date, "apply to timestamp fields"),
        ] {
            let err = parse(text, ty).unwrap_err();
            assert_eq!(err.parameter, "bucket");
            assert!(err.message.contains(expected), "{text}: {}", err.message);
        }
    }
}
