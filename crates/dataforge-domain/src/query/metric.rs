//! Aggregate metrics: `count()`, or a function of one field's non-null values
//! (`sum(oil)`, `percentile(oil,0.9)`), checked against the field's type.

use super::{QueryError, field_at};
use crate::schema::DatasetSchema;
use crate::value::FieldType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricFunction {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    /// The 50th percentile, interpolated.
    Median,
    /// The percentile `p` (0 to 1) of the values, interpolated linearly between the two nearest.
    Percentile,
    /// The sample standard deviation (n - 1 in the denominator); null for fewer than two values.
    Stddev,
}

/// The field types a metric function applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Any,
    Scalar,
    Numbers,
    Ordered,
}

impl MetricFunction {
    const ALL: [(&'static str, MetricFunction, Takes); 9] = [
        ("count", MetricFunction::Count, Takes::Any),
        (
            "count_distinct",
            MetricFunction::CountDistinct,
            Takes::Scalar,
        ),
        ("sum", MetricFunction::Sum, Takes::Numbers),
        ("avg", MetricFunction::Avg, Takes::Numbers),
        ("min", MetricFunction::Min, Takes::Ordered),
        ("max", MetricFunction::Max, Takes::Ordered),
        ("median", MetricFunction::Median, Takes::Numbers),
        ("percentile", MetricFunction::Percentile, Takes::Numbers),
        ("stddev", MetricFunction::Stddev, Takes::Numbers),
    ];

    pub fn name(self) -> &'static str {
        self.row().0
    }

    fn row(self) -> (&'static str, MetricFunction, Takes) {
        MetricFunction::ALL
            .into_iter()
            .find(|(_, f, _)| *f == self)
            .unwrap_or(MetricFunction::ALL[0])
    }

    fn named(name: &str) -> Option<MetricFunction> {
        MetricFunction::ALL
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, f, _)| f)
    }

    /// The functions that apply to a field of type `ty` (an API description lists them).
    pub fn names_for(ty: FieldType) -> Vec<&'static str> {
        MetricFunction::ALL
            .into_iter()
            .filter(|(_, f, _)| *f != MetricFunction::Count && f.fits(ty).is_ok())
            .map(|(n, _, _)| n)
            .collect()
    }

    fn names() -> String {
        MetricFunction::ALL.map(|(n, _, _)| n).join(", ")
    }

    /// Whether the function applies to a field of type `ty`; the types it applies to otherwise.
    fn fits(self, ty: FieldType) -> Result<(), &'static str> {
        let (fits, types) = match self.row().2 {
            Takes::Any => (true, "every field"),
            Takes::Scalar => (ty != FieldType::Json, "every field but json ones"),
            Takes::Numbers => (
                matches!(ty, FieldType::Integer | FieldType::Float),
                "integer and float fields",
            ),
            Takes::Ordered => (
                ty.is_ordered() || ty.is_text(),
                "integer, float, date, timestamp and string fields",
            ),
        };
        if fits { Ok(()) } else { Err(types) }
    }
}

/// A metric: `count()` counts rows; with a field, the function of its non-null values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub function: MetricFunction,
    pub field: Option<usize>,
    /// The `p` of a percentile, from 0 to 1.
    pub fraction: Option<f64>,
}

impl Metric {
    /// The answer column's name: `count`, `{function}_{field}` (e.g. `sum_oil_production_kbd`), or
    /// `p{percent}_{field}` for a percentile (`p90_oil_production_kbd`, `p99_9_…`), names that
    /// `order` and `having` can use as they are.
    pub fn name(&self, schema: &DatasetSchema) -> String {
        match (self.field, self.fraction) {
            (None, _) => self.function.name().to_owned(),
            (Some(f), Some(p)) => format!("p{}_{}", percent(p), schema.fields[f].name),
            (Some(f), None) => format!("{}_{}", self.function.name(), schema.fields[f].name),
        }
    }

    /// The type of the metric's values.
    pub fn field_type(&self, schema: &DatasetSchema) -> FieldType {
        match (self.function, self.field) {
            (MetricFunction::Count | MetricFunction::CountDistinct, _) | (_, None) => {
                FieldType::Integer
            }
            (
                MetricFunction::Avg
                | MetricFunction::Median
                | MetricFunction::Percentile
                | MetricFunction::Stddev,
                _,
            ) => FieldType::Float,
            (MetricFunction::Sum | MetricFunction::Min | MetricFunction::Max, Some(f)) => {
                schema.fields[f].field_type
            }
        }
    }
}

/// `p` as a percentage for a column name: 0.9 is `90`, 0.999 is `99_9`.
fn percent(p: f64) -> String {
    let rounded = (p * 100.0 * 1e6).round() / 1e6;
    format!("{rounded}").replace('.', "_")
}

/// Parses `count()`, `function(field)` or `percentile(field,p)`, with errors at `at`.
pub(crate) fn parse_metric(
    schema: &DatasetSchema,
    at: &str,
    item: &str,
) -> Result<Metric, QueryError> {
    let malformed = || {
        QueryError::new(
            at,
            format!(
                "expected `function(field)` or `count()`, found `{item}`; functions: {}",
                MetricFunction::names()
            ),
        )
    };
    let (name, rest) = item.split_once('(').ok_or_else(malformed)?;
    let name = name.trim();
    let arguments = rest.strip_suffix(')').ok_or_else(malformed)?;
    let function = MetricFunction::named(name).ok_or_else(|| {
        QueryError::new(
            at,
            format!(
                "unknown function `{name}`; functions: {}",
                MetricFunction::names()
            ),
        )
    })?;
    let (argument, fraction) = match arguments.split_once(',') {
        Some((field, p)) if function == MetricFunction::Percentile => {
            (field.trim(), Some(parse_fraction(at, p.trim())?))
        }
        Some(_) => {
            return Err(QueryError::new(
                at,
                format!("`{name}` takes one field, found `{item}`"),
            ));
        }
        None if function == MetricFunction::Percentile => {
            return Err(QueryError::new(
                at,
                format!(
                    "`percentile` takes a field and a fraction from 0 to 1, e.g. `percentile(field,0.9)`, found `{item}`"
                ),
            ));
        }
        None => (arguments.trim(), None),
    };
    if argument.is_empty() {
        return if function == MetricFunction::Count {
            Ok(Metric {
                function,
                field: None,
                fraction: None,
            })
        } else {
            Err(QueryError::new(
                at,
                format!("`{name}` needs a field, e.g. `{name}(field)`"),
            ))
        };
    }
    let field = field_at(schema, at, argument)?;
    let ty = schema.fields[field].field_type;
    function.fits(ty).map_err(|types| {
        QueryError::new(
            at,
            format!("`{name}` applies to {types}; field `{argument}` is {ty}"),
        )
    })?;
    Ok(Metric {
        function,
        field: Some(field),
        fraction,
    })
}

/// A percentile's `p`: a number from 0 to 1.
fn parse_fraction(at: &str, text: &str) -> Result<f64, QueryError> {
    text.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| {
            QueryError::new(
                at,
                format!(
                    "the percentile's fraction must be a number from 0 to 1 (0.9 for the 90th), found `{text}`"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wells;

    #[test]
    fn the_functions_listed_for_a_type_are_those_that_fit_it() {
        for ty in FieldType::ALL {
            for (name, function, _) in MetricFunction::ALL {
                let listed = MetricFunction::names_for(ty).contains(&name);
                let fits = function != MetricFunction::Count && function.fits(ty).is_ok();
                assert_eq!(listed, fits, "{name} on {ty}");
            }
        }
        assert_eq!(
            MetricFunction::names_for(FieldType::Boolean),
            ["count_distinct"]
        );
    }

    #[test]
    fn new_metrics_parse_with_their_names_and_types() {
        let s = wells();
        for (item, name, ty) in [
            (
                "count_distinct(name)",
                "count_distinct_name",
                FieldType::Integer,
            ),
            (
                "count_distinct(active)",
                "count_distinct_active",
                FieldType::Integer,
            ),
            ("median(well_code)", "median_well_code", FieldType::Float),
            ("percentile(oil, 0.9)", "p90_oil", FieldType::Float),
            ("percentile(oil,0.999)", "p99_9_oil", FieldType::Float),
            ("percentile(oil,0)", "p0_oil", FieldType::Float),
            ("percentile(oil,1)", "p100_oil", FieldType::Float),
            ("stddev(oil)", "stddev_oil", FieldType::Float),
            ("min(name)", "min_name", FieldType::String),
        ] {
            let metric = parse_metric(&s, "metrics", item).unwrap();
            assert_eq!(metric.name(&s), name, "{item}");
            assert_eq!(metric.field_type(&s), ty, "{item}");
        }
        let p = parse_metric(&s, "metrics", "percentile(oil,0.25)").unwrap();
        assert_eq!(
            (p.function, p.fraction),
            (MetricFunction::Percentile, Some(0.25))
        );
    }

    #[test]
    fn misapplied_metrics_say_why() {
        let s = wells();
        for (item, expected) in [
            ("percentile(oil,1.5)", "from 0 to 1"),
            ("percentile(oil,-0.1)", "from 0 to 1"),
            ("percentile(oil,NaN)", "from 0 to 1"),
            ("percentile(oil,high)", "from 0 to 1"),
            ("percentile(oil)", "takes a field and a fraction"),
            (
                "percentile(name,0.5)",
                "applies to integer and float fields",
            ),
            ("median(period)", "applies to integer and float fields"),
            ("stddev(active)", "applies to integer and float fields"),
            ("count_distinct(extra)", "every field but json ones"),
            ("median(oil,0.5)", "takes one field"),
            ("stddev()", "needs a field"),
            ("mode(oil)", "unknown function `mode`"),
        ] {
            let err = parse_metric(&s, "metrics", item).unwrap_err();
            assert_eq!(err.parameter, "metrics");
            assert!(err.message.contains(expected), "{item}: {}", err.message);
        }
    }
}
