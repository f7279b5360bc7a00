//! What the fuzz targets share: the shipped `well_production` schema, which the seed files of
//! the body decoders (made by `dataforge generate`) follow.

use std::sync::{Arc, LazyLock};

use dataforge_domain::schema::DatasetSchema;

pub static WELL_PRODUCTION: LazyLock<Arc<DatasetSchema>> = LazyLock::new(|| {
    let text = include_str!("../../schemas/well_production.toml").to_owned();
    let catalog = dataforge_schema_toml::parse_catalog(&[("well_production.toml".into(), text)])
        .unwrap_or_else(|problems| panic!("the shipped schema is invalid: {problems:?}"));
    catalog
        .get("well_production")
        .cloned()
        .expect("the shipped schema declares well_production")
});

/// Lets a panic unwind, as it does in the server. libfuzzer-sys's hook aborts at any panic, even
/// one the decoders catch (they turn a panic of the Arrow and Parquet readers into an error, see
/// `dataforge-formats/src/untrusted.rs`); a panic that escapes the target still fails the run.
pub fn panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
