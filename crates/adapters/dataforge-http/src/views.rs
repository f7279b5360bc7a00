//! How schemas are shown to API clients.

use dataforge_domain::schema::{DatasetSchema, FieldSchema};
use serde_json::{Map, Value as Json, json};

pub fn dataset(schema: &DatasetSchema) -> Json {
    let names = |fields: &[usize]| {
        fields
            .iter()
            .map(|&i| schema.fields[i].name.clone())
            .collect::<Vec<_>>()
    };
    json!({
        "name": schema.name,
        "description": schema.description,
        "primary_key": names(&schema.primary_key),
        "indexes": schema.indexes.iter().map(|i| names(i)).collect::<Vec<_>>(),
        "cluster_by": names(&schema.cluster_by),
        "fields": schema.fields.iter().map(field).collect::<Vec<_>>(),
    })
}

fn field(field: &FieldSchema) -> Json {
    let mut view = Map::new();
    view.insert("name".into(), json!(field.name));
    view.insert("type".into(), json!(field.field_type.name()));
    view.insert("required".into(), json!(field.required));
    if !field.description.is_empty() {
        view.insert("description".into(), json!(field.description));
    }
    let rules = &field.constraints;
    let optional = [
        ("default", field.default.as_ref().map(|v| v.to_json())),
        ("min", rules.min.as_ref().map(|v| v.to_json())),
        ("max", rules.max.as_ref().map(|v| v.to_json())),
        (
            "one_of",
            rules
                .one_of
                .as_ref()
                .map(|vs| Json::Array(vs.iter().map(|v| v.to_json()).collect())),
        ),
        ("pattern", rules.pattern.as_ref().map(|p| json!(p.source))),
        ("max_length", rules.max_length.map(|n| json!(n))),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            view.insert(key.into(), value);
        }
    }
    Json::Object(view)
}
