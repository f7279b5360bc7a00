//! The SQL every SQL store reads with, written once: filters and JSON filter trees, keyset
//! positions, order, aggregates with time buckets, counts and reads by key, every value bound as a
//! parameter. What differs between engines (placeholders, type names, buckets, quantiles) is a
//! [`Dialect`]; each store binds the domain values of a [`Statement`] to its driver's types.

mod dialect;
mod literal;
mod migrate;
mod select;

pub use dialect::Dialect;
pub use literal::literal;
pub use migrate::{column_changes, mapped_select, repeated_keys};
pub use select::{Statement, by_key, count, plan, where_clause};

/// Quotes an identifier. Schema names are already restricted to `[a-z0-9_]`, so this never needs
/// to escape, but quoting keeps any name from being read as a keyword.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A comma-separated list of quoted column names.
pub fn column_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}
