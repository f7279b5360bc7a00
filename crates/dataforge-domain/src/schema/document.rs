//! A dataset's schema as a JSON document: what API clients are shown, and what the database keeps
//! of each applied schema version, so the next start can compare the declared schema with the one
//! its data was written under. Read back through the same checks as a schema file.

use serde_json::{Map, Value as Json, json};

use super::{
    DatasetDraft, DatasetSchema, FieldDraft, FieldSchema, Located, PartitionDraft, build_catalog,
};

/// The schema as a JSON document (`renamed_from`, an instruction to a migration, is left out).
pub fn to_document(schema: &DatasetSchema) -> Json {
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
        "partition_by": schema.partition_by.map(|p| json!({
            "field": schema.fields[p.field].name,
            "interval": p.interval.name(),
        })),
        "fields": schema.fields.iter().map(field_document).collect::<Vec<_>>(),
    })
}

fn field_document(field: &FieldSchema) -> Json {
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
        (
            "timezone",
            field.timestamps.timezone.map(|z| json!(z.name())),
        ),
        ("epoch", field.timestamps.epoch.map(|e| json!(e.name()))),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            view.insert(key.into(), value);
        }
    }
    Json::Object(view)
}

/// Reads a document written by [`to_document`] back into a checked schema.
pub fn from_document(document: &Json) -> Result<DatasetSchema, String> {
    let text = |value: Option<&Json>| value.and_then(Json::as_str).map(str::to_owned);
    let located = |value: Option<&Json>| value.filter(|v| !v.is_null()).cloned().map(at);
    let names = |value: Option<&Json>| -> Vec<String> {
        value
            .and_then(Json::as_array)
            .map(|items| items.iter().filter_map(|v| text(Some(v))).collect())
            .unwrap_or_default()
    };
    let fields = document["fields"]
        .as_array()
        .ok_or("a stored schema has no fields")?
        .iter()
        .map(|f| FieldDraft {
            line: None,
            name: text(f.get("name")).map(at),
            field_type: text(f.get("type")).map(at),
            required: f["required"].as_bool().map(|r| Located::new(r, None)),
            default: located(f.get("default")),
            description: text(f.get("description")),
            min: located(f.get("min")),
            max: located(f.get("max")),
            one_of: f["one_of"].as_array().cloned().map(at),
            pattern: text(f.get("pattern")).map(at),
            max_length: f["max_length"].as_i64().map(at),
            renamed_from: None,
            timezone: text(f.get("timezone")).map(at),
            epoch: text(f.get("epoch")).map(at),
        })
        .collect();
    let cluster_by = names(document.get("cluster_by"));
    let draft = DatasetDraft {
        origin: "the stored schema".into(),
        line: None,
        name: text(document.get("name")).map(at),
        description: text(document.get("description")).filter(|d| !d.is_empty()),
        fields,
        primary_key: Some(at(names(document.get("primary_key")))),
        indexes: document["indexes"]
            .as_array()
            .map(|all| all.iter().map(|i| at(names(Some(i)))).collect())
            .unwrap_or_default(),
        cluster_by: (!cluster_by.is_empty()).then(|| at(cluster_by)),
        partition_by: document
            .get("partition_by")
            .filter(|p| p.is_object())
            .map(|p| {
                at(PartitionDraft {
                    field: text(p.get("field")),
                    interval: text(p.get("interval")),
                })
            }),
        timezone: None,
    };
    let catalog = build_catalog(std::slice::from_ref(&draft)).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    catalog
        .iter()
        .next()
        .map(|schema| schema.as_ref().clone())
        .ok_or_else(|| "a stored schema names no dataset".into())
}

fn at<T>(value: T) -> Located<T> {
    Located::new(value, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wells;

    #[test]
    fn a_document_reads_back_as_the_same_schema() {
        let schema = wells();
        let document = to_document(&schema);
        let read = from_document(&document).unwrap();
        assert_eq!(to_document(&read), document);
        assert_eq!(read.primary_key, schema.primary_key);
        assert!(from_document(&json!({"name": "x"})).is_err());
    }
}
