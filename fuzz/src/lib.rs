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
