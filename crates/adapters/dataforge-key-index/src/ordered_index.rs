//! A schema's declared `indexes`, kept in the key-value store beside the records. DuckDB does not use
//! an ART index for a filter combined with an order (see docs/read-path.md), and a filtered page
//! costs a millisecond or more of query execution there; an ordered index answers such a page by
//! reading the next entries of a B-tree and the records they point to.
//!
//! An entry's key is the declared fields followed by the primary-key fields not among them, encoded
//! so bytes sort as the values do (ascending, nulls last), and it has no value: the key holds the
//! record's primary key. Entries are therefore unique, and ties on the declared fields sort by
//! primary key, which is how a page breaks them too.

use std::ops::Bound;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::SortOptions;
use dataforge_domain::ports::StoreError;
use dataforge_domain::query::{Comparison, Condition, Filter, Predicate, RecordQuery};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value};
use heed::types::{Bytes, Unit};

use crate::error::index_error;
use crate::row_codec::one_value_array;

/// Pages longer than this are left to the store: past a few thousand rows a scan of the table is
/// no slower than as many lookups, and exports stream from the store.
pub(crate) const MAX_INDEXED_PAGE: usize = 10_000;

/// The order of every key column: as pages sort (nulls last), and with nulls after every value so
/// a range ends before them.
const ASCENDING_NULLS_LAST: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

fn row_error(e: arrow_schema::ArrowError) -> StoreError {
    StoreError::Internal(format!("index key: {e}"))
}

/// One declared index.
pub(crate) struct OrderedIndex {
    pub(crate) db: heed::Database<Bytes, Unit>,
    /// Field positions of an entry's key, in order.
    columns: Vec<usize>,
    converter: RowConverter,
    schema_fields: Vec<SortField>,
    /// Key columns holding floats: bytes order -0.0 before 0.0 where SQL calls them equal, so
    /// filters on them are left to the store.
    float_columns: Vec<usize>,
}

impl OrderedIndex {
    pub(crate) fn new(
        schema: &DatasetSchema,
        declared: &[usize],
        db: heed::Database<Bytes, Unit>,
    ) -> Result<Self, StoreError> {
        let mut columns = declared.to_vec();
        columns.extend(schema.primary_key.iter().filter(|f| !declared.contains(f)));
        let schema_fields: Vec<SortField> = columns
            .iter()
            .map(|&c| {
                SortField::new_with_options(
                    schema.fields[c].field_type.arrow_type(),
                    ASCENDING_NULLS_LAST,
                )
            })
            .collect();
        let converter = RowConverter::new(schema_fields.clone()).map_err(row_error)?;
        let float_columns = columns
            .iter()
            .copied()
            .filter(|&c| schema.fields[c].field_type == FieldType::Float)
            .collect();
        Ok(OrderedIndex {
            db,
            columns,
            converter,
            schema_fields,
            float_columns,
        })
    }

    /// The name of the key-value database holding the index, unique within the environment.
    pub(crate) fn db_name(schema: &DatasetSchema, declared: &[usize]) -> String {
        let names: Vec<&str> = declared
            .iter()
            .map(|&i| schema.fields[i].name.as_str())
            .collect();
        format!("{}/by/{}", schema.name, names.join(","))
    }

    /// The entry keys of every row of `batch` (shaped as the dataset's schema).
    pub(crate) fn entry_keys(&self, batch: &RecordBatch) -> Result<Rows, StoreError> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        self.converter.convert_columns(&columns).map_err(row_error)
    }

    /// The primary-key columns (in key order) of entry keys read from this index.
    pub(crate) fn primary_key_columns(
        &self,
        schema: &DatasetSchema,
        entries: &[&[u8]],
    ) -> Result<Vec<ArrayRef>, StoreError> {
        let parser = self.converter.parser();
        let columns = self
            .converter
            .convert_rows(entries.iter().map(|e| parser.parse(e)))
            .map_err(row_error)?;
        schema
            .primary_key
            .iter()
            .map(|field| {
                self.columns
                    .iter()
                    .position(|c| c == field)
                    .map(|i| Arc::clone(&columns[i]))
                    .ok_or_else(|| {
                        StoreError::Internal("an index key lacks a primary-key field".into())
                    })
            })
            .collect()
    }

    /// The encoding of the first `values.len()` key columns holding `values`: a prefix of the
    /// keys of the entries holding them.
    fn encode(&self, schema: &DatasetSchema, values: &[Value]) -> Result<Vec<u8>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let converter =
            RowConverter::new(self.schema_fields[..values.len()].to_vec()).map_err(row_error)?;
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .zip(values)
            .map(|(&c, v)| one_value_array(schema.fields[c].field_type, v))
            .collect();
        let rows = converter.convert_columns(&columns).map_err(row_error)?;
        Ok(rows
            .iter()
            .next()
            .map(|row| row.as_ref().to_vec())
            .unwrap_or_default())
    }

    /// How this index answers `query`, if it can: every filter is an equality on one of the
    /// leading key columns or a range on the column after them, and the order is the rest of the
    /// key, ascending. A bounded page only.
    pub(crate) fn plan(&self, query: &RecordQuery) -> Option<IndexRange> {
        let limit = query.limit.filter(|&n| n <= MAX_INDEXED_PAGE)?;
        let mut filters = Vec::new();
        if !conjunction(&query.filter, &mut filters)
            || filters
                .iter()
                .any(|f| self.float_columns.contains(&f.field))
        {
            return None;
        }
        let on = |column: usize| -> Vec<&Condition> {
            filters
                .iter()
                .filter(|f| f.field == column)
                .map(|f| &f.condition)
                .collect()
        };
        let prefix = self.fixed_prefix(on);
        let (lower, upper, ranges) = match self.columns.get(prefix.len()) {
            Some(&column) => {
                let conditions = on(column);
                let (lower, upper) = range_of(&conditions)?;
                (lower, upper, conditions.len())
            }
            None => (Bound::Unbounded, Bound::Unbounded, 0),
        };
        if prefix.len() + ranges != filters.len() || !self.ordered_by_rest(query, prefix.len()) {
            return None;
        }
        let after = match &query.after {
            None => None,
            Some(values) => Some(self.after_key(query, &prefix, values)?),
        };
        Some(IndexRange {
            prefix,
            lower,
            upper,
            after,
            limit,
        })
    }

    /// The values the leading key columns are fixed to by equalities (`on` gives a column's
    /// conditions), up to the first column that is not.
    fn fixed_prefix<'q>(&self, on: impl Fn(usize) -> Vec<&'q Condition>) -> Vec<Value> {
        let mut prefix = Vec::new();
        for &column in &self.columns {
            match on(column).as_slice() {
                [Condition::Compare(Comparison::Eq, value)] if !value.is_null() => {
                    prefix.push(value.clone())
                }
                _ => break,
            }
        }
        prefix
    }

    /// Whether `query`'s order, past the `fixed` leading columns, is the rest of the key ascending.
    fn ordered_by_rest(&self, query: &RecordQuery, fixed: usize) -> bool {
        let (fixed, rest) = self.columns.split_at(fixed);
        let order: Vec<_> = query
            .order
            .iter()
            .filter(|k| !fixed.contains(&k.field))
            .collect();
        order.len() == rest.len()
            && order
                .iter()
                .zip(rest)
                .all(|(k, &c)| !k.descending && k.field == c)
    }

    /// The whole key of the entry a page starts after, from the fixed `prefix` and the order's
    /// `values` of the previous page's last record.
    fn after_key(
        &self,
        query: &RecordQuery,
        prefix: &[Value],
        values: &[Value],
    ) -> Option<Vec<Value>> {
        let fixed = &self.columns[..prefix.len()];
        self.columns
            .iter()
            .map(|c| match fixed.iter().position(|f| f == c) {
                Some(i) => Some(prefix[i].clone()),
                None => query
                    .order
                    .iter()
                    .position(|k| k.field == *c)
                    .and_then(|i| values.get(i).cloned()),
            })
            .collect()
    }

    /// The keys of the entries in `range`, in order, passed to `found` until it has taken
    /// `range.limit` of them.
    pub(crate) fn scan<'t>(
        &self,
        schema: &DatasetSchema,
        tx: &'t heed::RoTxn<'_>,
        range: &IndexRange,
        mut found: impl FnMut(&'t [u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let span = self.span(schema, range)?;
        let mut taken = 0;
        let entries = self
            .db
            .range(
                tx,
                &(Bound::Included(span.start.as_slice()), Bound::Unbounded),
            )
            .map_err(index_error)?;
        for entry in entries {
            if taken == range.limit {
                break;
            }
            let (key, ()) = entry.map_err(index_error)?;
            if !key.starts_with(&span.prefix) || span.ended_before(key) {
                break;
            }
            if span.after.as_deref() == Some(key)
                || span.skipped.as_ref().is_some_and(|s| key.starts_with(s))
            {
                continue;
            }
            found(key)?;
            taken += 1;
        }
        Ok(())
    }

    /// Where a scan of `range` runs, in encoded keys.
    fn span(&self, schema: &DatasetSchema, range: &IndexRange) -> Result<Span, StoreError> {
        let prefix = self.encode(schema, &range.prefix)?;
        let with = |value: &Value| {
            let mut values = range.prefix.clone();
            values.push(value.clone());
            self.encode(schema, &values)
        };
        // where the range starts; entries holding an excluded lower bound are skipped
        let (mut start, skipped) = match &range.lower {
            Bound::Included(v) => (with(v)?, None),
            Bound::Excluded(v) => {
                let bound = with(v)?;
                (bound.clone(), Some(bound))
            }
            Bound::Unbounded => (prefix.clone(), None),
        };
        // where it ends: past the upper bound, or at the nulls (a comparison excludes them)
        let end = match &range.upper {
            Bound::Included(v) => Some((with(v)?, true)),
            Bound::Excluded(v) => Some((with(v)?, false)),
            Bound::Unbounded if !matches!(range.lower, Bound::Unbounded) => {
                Some((with(&Value::Null)?, false))
            }
            Bound::Unbounded => None,
        };
        let after = range
            .after
            .as_ref()
            .map(|values| self.encode(schema, values))
            .transpose()?;
        if let Some(after) = &after
            && *after > start
        {
            start.clone_from(after);
        }
        Ok(Span {
            prefix,
            start,
            skipped,
            end,
            after,
        })
    }
}

/// Where a scan of an [`IndexRange`] runs, in encoded keys.
struct Span {
    /// What every entry of the range begins with: the values fixed by equalities.
    prefix: Vec<u8>,
    /// The first key read.
    start: Vec<u8>,
    /// Entries beginning with it are skipped (an excluded lower bound).
    skipped: Option<Vec<u8>>,
    /// Where the range ends, and whether entries beginning with it are in it.
    end: Option<(Vec<u8>, bool)>,
    /// The whole key of the entry the page starts after.
    after: Option<Vec<u8>>,
}

impl Span {
    /// Whether the range ended before `key`.
    fn ended_before(&self, key: &[u8]) -> bool {
        self.end.as_ref().is_some_and(|(bound, inclusive)| {
            let head = &key[..bound.len().min(key.len())];
            head > bound.as_slice() || (!inclusive && head == bound.as_slice())
        })
    }
}

/// The bounds `conditions` set together on one column, or `None` when one of them is not a range
/// or two set the same side.
fn range_of(conditions: &[&Condition]) -> Option<(Bound<Value>, Bound<Value>)> {
    let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
    for condition in conditions {
        let (low, high) = range_bounds(condition)?;
        if let Some(low) = low {
            if !matches!(lower, Bound::Unbounded) {
                return None;
            }
            lower = low;
        }
        if let Some(high) = high {
            if !matches!(upper, Bound::Unbounded) {
                return None;
            }
            upper = high;
        }
    }
    Some((lower, upper))
}

/// The lower and upper bounds a condition sets on its column, or `None` for one that is not a
/// range.
#[allow(clippy::type_complexity)]
fn range_bounds(condition: &Condition) -> Option<(Option<Bound<Value>>, Option<Bound<Value>>)> {
    let bounds = match condition {
        Condition::Compare(op, value) if !value.is_null() => {
            let value = value.clone();
            match op {
                Comparison::Gt => (Some(Bound::Excluded(value)), None),
                Comparison::Gte => (Some(Bound::Included(value)), None),
                Comparison::Lt => (None, Some(Bound::Excluded(value))),
                Comparison::Lte => (None, Some(Bound::Included(value))),
                Comparison::Eq | Comparison::Ne => return None,
            }
        }
        Condition::Between(low, high) if !low.is_null() && !high.is_null() => (
            Some(Bound::Included(low.clone())),
            Some(Bound::Included(high.clone())),
        ),
        _ => return None,
    };
    Some(bounds)
}

/// Collects the filters of a predicate that is a conjunction of them; false for any other shape.
fn conjunction<'a>(predicate: &'a Predicate, filters: &mut Vec<&'a Filter>) -> bool {
    match predicate {
        Predicate::Filter(filter) => {
            filters.push(filter);
            true
        }
        Predicate::And(terms) => terms.iter().all(|t| conjunction(t, filters)),
        Predicate::Or(_) | Predicate::Not(_) => false,
    }
}

/// The entries a page reads from an ordered index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRange {
    /// Values of the leading key columns, fixed by equalities.
    prefix: Vec<Value>,
    /// Bounds on the key column after them.
    lower: Bound<Value>,
    upper: Bound<Value>,
    /// The whole key of the last entry of the previous page.
    after: Option<Vec<Value>>,
    limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataforge_domain::query::{QueryLimits, parse_list_params};
    use dataforge_domain::schema::{Located, build_catalog};
    use dataforge_domain::testing::{dataset, field};

    /// `wells` keyed by (well_code, period), with an index on (field_code, period).
    fn schema() -> Arc<DatasetSchema> {
        let mut draft = dataset(
            "wells",
            vec![
                field("well_code", "integer"),
                field("field_code", "integer"),
                field("period", "timestamp"),
                field("oil", "float"),
            ],
            &["well_code", "period"],
        );
        draft.indexes = vec![Located::new(
            vec!["field_code".into(), "period".into()],
            Some(1),
        )];
        build_catalog(&[draft])
            .unwrap()
            .get("wells")
            .unwrap()
            .clone()
    }

    fn query(schema: &DatasetSchema, params: &str) -> RecordQuery {
        let params: Vec<(String, String)> = params
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        parse_list_params(schema, &params, QueryLimits::default(), true).unwrap()
    }

    #[test]
    fn plans_pages_that_an_index_orders_and_bounds() {
        let schema = schema();
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: one environment on a fresh directory, opened once in this test
        let env = unsafe { heed::EnvOpenOptions::new().max_dbs(1).open(dir.path()) }.unwrap();
        let mut tx = env.write_txn().unwrap();
        let db = env.create_database(&mut tx, Some("by")).unwrap();
        tx.commit().unwrap();
        let index = OrderedIndex::new(&schema, &schema.indexes[0], db).unwrap();
        assert_eq!(
            index.columns,
            vec![1, 2, 0],
            "declared fields, then the rest of the key"
        );

        let served = [
            "field_code=eq.3&period=gte.2000-01-01&order=period",
            "field_code=eq.3&period=gt.2000-01-01&period=lt.2001-01-01&order=period",
            "field_code=eq.3&period=between.(2000-01-01,2001-01-01)&order=period,well_code",
            "field_code=eq.3&order=period",
            "field_code=gte.3&order=field_code,period",
            "order=field_code,period",
            "select=oil&field_code=eq.3&order=period&limit=10000",
        ];
        for params in served {
            assert!(index.plan(&query(&schema, params)).is_some(), "{params}");
        }
        let refused = [
            // the order is not the index's, or descends
            "field_code=eq.3",
            "field_code=eq.3&order=period.desc",
            "field_code=eq.3&order=oil",
            // a filter on a field outside the index, or not a range or equality
            "field_code=eq.3&oil=gt.1&order=period",
            "field_code=in.(3,4)&order=period",
            "field_code=eq.3&period=ne.2000-01-01&order=period",
            // a range on a column that does not follow the equalities
            "period=gte.2000-01-01&order=period",
            "field_code=eq.3&well_code=eq.5&order=period",
            // two lower bounds
            "field_code=eq.3&period=gt.2000-01-01&period=gte.2001-01-01&order=period",
        ];
        for params in refused {
            assert!(index.plan(&query(&schema, params)).is_none(), "{params}");
        }
        // streams are left to the store
        let mut unbounded = query(&schema, "field_code=eq.3&order=period");
        unbounded.limit = None;
        assert!(index.plan(&unbounded).is_none());
        // and filters on floats (-0.0 sorts before 0.0 in the index, equals it in SQL)
        let by_oil = OrderedIndex::new(&schema, &[3], db).unwrap();
        assert!(by_oil.plan(&query(&schema, "order=oil")).is_some());
        assert!(by_oil.plan(&query(&schema, "oil=eq.0&order=oil")).is_none());
        assert!(
            by_oil
                .plan(&query(&schema, "oil=gte.0&order=oil"))
                .is_none()
        );
    }
}
