//! How schemas are shown to API clients: the schema's document, with the version the database
//! applied, what the credential may do to the dataset, and per field the filter operators,
//! aggregate functions and time buckets its type takes (so that a client, the explorer among
//! them, offers only what the API accepts).

use dataforge_domain::access::{Access, Permission};
use dataforge_domain::query::{BucketUnit, MetricFunction, operators_for};
use dataforge_domain::schema::{DatasetSchema, to_document};
use serde_json::{Value as Json, json};

pub fn dataset(schema: &DatasetSchema, version: Option<u64>, access: &Access) -> Json {
    let mut view = to_document(schema);
    view["version"] = json!(version);
    view["permissions"] = json!(
        Permission::ALL
            .into_iter()
            .filter(|p| access.may(&schema.name, *p))
            .map(Permission::name)
            .collect::<Vec<_>>()
    );
    if let Some(fields) = view["fields"].as_array_mut() {
        for (view, field) in fields.iter_mut().zip(&schema.fields) {
            let ty = field.field_type;
            view["operators"] = json!(operators_for(ty));
            view["metrics"] = json!(MetricFunction::names_for(ty));
            view["buckets"] = json!(BucketUnit::names_for(ty));
        }
    }
    view
}

/// `GET /v1/credential`: who the request acts for and its grants.
pub fn credential(access: &Access) -> Json {
    json!({
        "name": access.name,
        "grants": access.grants.iter().map(|g| json!({
            "dataset": g.dataset.as_deref().unwrap_or("*"),
            "permissions": g.permissions().map(Permission::name).collect::<Vec<_>>(),
            "rule": g.rule,
        })).collect::<Vec<_>>(),
    })
}
