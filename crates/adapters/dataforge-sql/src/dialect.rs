//! What an engine spells its own way in the SQL of reads.

use dataforge_domain::query::BucketUnit;
use dataforge_domain::value::FieldType;

/// An engine's spelling of the few things SQL engines disagree on.
pub trait Dialect: Sync {
    /// The placeholder of the `number`th parameter (1-based): `?` or `$1`.
    fn placeholder(&self, number: usize) -> String;

    /// The column type storing a field type.
    fn column_type(&self, ty: FieldType) -> &'static str;

    /// The start of the bucket `column` falls in, `count` units wide (more than one), counted from
    /// 2000-01-03 (a Monday, so weeks stay ISO weeks) for minutes to weeks and from 2000-01-01 for
    /// months to years (so `3month` buckets are quarters and `10year` ones decades). One unit is
    /// `date_trunc` in every engine.
    fn bucket(&self, unit: BucketUnit, count: u32, column: &str) -> String;

    /// The `fraction` quantile of a double expression, interpolated between values.
    fn quantile(&self, expression: &str, fraction: f64) -> String;

    /// A timestamp (microseconds from 1970-01-01 UTC) as an SQL literal: the one literal engines
    /// spell their own way (the others are [`literal`](crate::literal()), for every engine).
    fn timestamp_literal(&self, micros: i64) -> String;

    /// A stored column converted to the column type `ty` in a migration that changes its type.
    fn converted(&self, column: &str, ty: &str) -> String;
}
