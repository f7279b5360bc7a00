//! How schemas are shown to API clients: the schema's document, with the version the database
//! applied.

use dataforge_domain::schema::{DatasetSchema, to_document};
use serde_json::{Value as Json, json};

pub fn dataset(schema: &DatasetSchema, version: Option<u64>) -> Json {
    let mut view = to_document(schema);
    view["version"] = json!(version);
    view
}
