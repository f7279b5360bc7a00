//! The statements of a write's commit, as text over the staged records (`_dataforge_staged`: a
//! temporary table, or the `VALUES` of a small write under that name): one `INSERT` per conflict
//! mode, the listing of conflicting keys and of incomplete merged records, and the reading back of
//! the keys they list.

use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_sql::{column_list, literal, quote};

use crate::dialect::PostgresDialect;
use crate::values::{Cell, column_type};

/// The staged records, as every statement names them.
pub(super) const STAGED: &str = "_dataforge_staged";
/// The column holding a staged record's position in the write, from 0.
pub(super) const ROW: &str = "_dataforge_row";
/// Conflicting keys or incomplete records listed, at most.
const LISTED: i64 = 100;

/// Keys that exist already (`exists`) or repeat among the staged records (`repeated`), in the
/// order of their first record: the key fields, the reason, the position, the total.
pub(super) fn conflicts(schema: &DatasetSchema) -> String {
    let key = column_list(schema.key_fields().map(|f| f.name.as_str()));
    let table = quote(&schema.name);
    let matches = key_matches(schema);
    format!(
        "WITH found AS ( \
           SELECT {key}, 'repeated' AS reason, min({ROW}) AS at FROM {STAGED} GROUP BY {key} HAVING count(*) > 1 \
           UNION ALL \
           SELECT {key}, 'exists', min({ROW}) FROM {STAGED} s \
             WHERE EXISTS (SELECT 1 FROM {table} t WHERE {matches}) GROUP BY {key}) \
         SELECT *, count(*) OVER () FROM found ORDER BY at LIMIT {LISTED}"
    )
}

/// Merged records (the last of each key) whose key is not stored and that lack a required field
/// without a default: position, key fields, field, total. `None` when no field can be lacking.
pub(super) fn incomplete(schema: &DatasetSchema) -> Option<String> {
    let table = quote(&schema.name);
    let key = column_list(schema.key_fields().map(|f| f.name.as_str()));
    let matches = key_matches(schema);
    let missing: Vec<String> = schema
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| f.required && f.default.is_none() && !schema.primary_key.contains(i))
        .map(|(_, f)| format!("({} IS NULL, '{}')", quote(&f.name), f.name))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "WITH latest AS (SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW} DESC), \
         lacking AS (SELECT s.{ROW}, {key_s}, m.field FROM latest s \
           CROSS JOIN LATERAL (VALUES {missing}) AS m(absent, field) \
           WHERE m.absent AND NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})) \
         SELECT *, count(*) OVER () FROM lacking ORDER BY 1 LIMIT {LISTED}",
        key_s = schema
            .key_fields()
            .map(|f| format!("s.{}", quote(&f.name)))
            .collect::<Vec<_>>()
            .join(", "),
        missing = missing.join(", ")
    ))
}

/// A key read back from the first columns of `row`.
pub(super) fn key_values(schema: &DatasetSchema, row: &tokio_postgres::Row) -> Vec<Value> {
    key_values_from(schema, row, 0)
}

pub(super) fn key_values_from(
    schema: &DatasetSchema,
    row: &tokio_postgres::Row,
    from: usize,
) -> Vec<Value> {
    schema
        .key_fields()
        .enumerate()
        .map(|(i, f)| match row.try_get::<_, Option<Cell>>(from + i) {
            Ok(Some(cell)) => cell.value(f.field_type),
            _ => Value::Null,
        })
        .collect()
}

/// `t.k1 = s.k1 AND ...` over the primary key.
fn key_matches(schema: &DatasetSchema) -> String {
    schema
        .key_fields()
        .map(|f| format!("t.{0} = s.{0}", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The `INSERT`s of a commit, one per conflict mode.
pub(super) struct Inserts {
    table: String,
    columns: String,
    key: String,
    /// Fields not in the key.
    others: Vec<String>,
    /// Stored `t` and staged `s` records with one key.
    matches: String,
    /// Every column of a staged record `s`, a declared default where it is null.
    defaulted: String,
}

impl Inserts {
    pub(super) fn new(schema: &DatasetSchema) -> Self {
        Inserts {
            table: quote(&schema.name),
            columns: column_list(schema.fields.iter().map(|f| f.name.as_str())),
            key: column_list(schema.key_fields().map(|f| f.name.as_str())),
            others: schema
                .fields
                .iter()
                .enumerate()
                .filter(|(i, _)| !schema.primary_key.contains(i))
                .map(|(_, f)| quote(&f.name))
                .collect(),
            matches: key_matches(schema),
            defaulted: schema
                .fields
                .iter()
                .map(|f| match &f.default {
                    Some(default) => format!(
                        "COALESCE(s.{0}, CAST({1} AS {2}))",
                        quote(&f.name),
                        literal(&PostgresDialect, default),
                        column_type(f.field_type)
                    ),
                    None => format!("s.{}", quote(&f.name)),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    pub(super) fn plain(&self) -> String {
        let Inserts { table, columns, .. } = self;
        format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGED}")
    }

    /// The first record of each key, unless the key is stored.
    pub(super) fn ignoring(&self) -> String {
        let Inserts {
            table,
            columns,
            key,
            ..
        } = self;
        format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM \
             (SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW}) s \
             ON CONFLICT ({key}) DO NOTHING"
        )
    }

    /// The last record of each key replaces the stored one; answers the records inserted and
    /// updated.
    pub(super) fn replacing(&self) -> String {
        let Inserts {
            table,
            columns,
            key,
            ..
        } = self;
        let sets: Vec<String> = if self.others.is_empty() {
            // a dataset of key fields only: a stored key is "updated" to itself
            vec![format!(
                "{0} = EXCLUDED.{0}",
                key.split(", ").next().unwrap_or(key)
            )]
        } else {
            self.others
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect()
        };
        format!(
            "WITH written AS (INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {latest} \
             ON CONFLICT ({key}) DO UPDATE SET {} RETURNING (xmax = 0) AS fresh) \
             SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM written",
            sets.join(", "),
            latest = self.latest()
        )
    }

    /// The last record of each key, as a subquery `s`.
    fn latest(&self) -> String {
        format!(
            "(SELECT DISTINCT ON ({key}) * FROM {STAGED} ORDER BY {key}, {ROW} DESC) s",
            key = self.key
        )
    }

    /// Stored records take the non-null fields of the last record with their key (`None` for a
    /// dataset of key fields only, where there is nothing to take).
    pub(super) fn merging(&self) -> Option<String> {
        if self.others.is_empty() {
            return None;
        }
        let sets: Vec<String> = self
            .others
            .iter()
            .map(|c| format!("{c} = COALESCE(s.{c}, t.{c})"))
            .collect();
        Some(format!(
            "UPDATE {} AS t SET {} FROM {} WHERE {}",
            self.table,
            sets.join(", "),
            self.latest(),
            self.matches
        ))
    }

    /// The last record of each key not stored, inserted, its absent fields given their
    /// defaults.
    pub(super) fn adding(&self) -> String {
        let Inserts {
            table,
            columns,
            matches,
            defaulted,
            ..
        } = self;
        format!(
            "INSERT INTO {table} ({columns}) SELECT {defaulted} FROM {} \
             WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})",
            self.latest()
        )
    }
}
