//! The dataforge domain: dataset schemas, values and their validation, the query model and the
//! storage ports. No web framework or database appears here; adapters depend on this crate, never
//! the other way round.

pub mod access;
pub mod change;
pub mod identifier;
pub mod ports;
pub mod query;
pub mod records;
pub mod schema;
pub mod timestamps;
pub mod validate;
pub mod value;
pub mod write;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
