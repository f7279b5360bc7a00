//! JSON Schemas (OpenAPI 3.1 speaks JSON Schema 2020-12) of what the API reads and answers: each
//! dataset's record, as written and as answered, and the shapes every dataset shares.

use dataforge_domain::schema::{DatasetSchema, FieldSchema};
use dataforge_domain::value::{FieldType, Value};
use serde_json::{Map, Value as Json, json};

/// A component reference.
pub(super) fn reference(name: &str) -> Json {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The component names of a dataset's schemas.
pub(super) fn record_name(schema: &DatasetSchema) -> String {
    format!("{}_record", schema.name)
}
pub(super) fn input_name(schema: &DatasetSchema) -> String {
    format!("{}_input", schema.name)
}
pub(super) fn changes_name(schema: &DatasetSchema) -> String {
    format!("{}_changes", schema.name)
}
pub(super) fn row_name(schema: &DatasetSchema) -> String {
    format!("{}_row", schema.name)
}

/// The schema of one value of `field`, rules included; `nullable` adds null.
pub(super) fn field_schema(field: &FieldSchema, nullable: bool) -> Json {
    let rules = &field.constraints;
    let bound = |value: &Option<Value>| value.as_ref().map(Value::to_json);
    let mut schema = match field.field_type {
        FieldType::String => json!({"type": "string"}),
        FieldType::Integer => json!({"type": "integer", "format": "int64"}),
        FieldType::Float => json!({"type": "number", "format": "double"}),
        FieldType::Boolean => json!({"type": "boolean"}),
        FieldType::Date => json!({"type": "string", "format": "date"}),
        FieldType::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldType::Json => json!({}),
    };
    let object = schema.as_object_mut().expect("a schema object");
    if matches!(field.field_type, FieldType::Integer | FieldType::Float) {
        if let Some(min) = bound(&rules.min) {
            object.insert("minimum".into(), min);
        }
        if let Some(max) = bound(&rules.max) {
            object.insert("maximum".into(), max);
        }
    }
    if let Some(max_length) = rules.max_length {
        object.insert("maxLength".into(), json!(max_length));
    }
    if let Some(pattern) = &rules.pattern {
        object.insert("pattern".into(), json!(pattern.source));
    }
    if let Some(one_of) = &rules.one_of {
        object.insert("enum".into(), one_of.iter().map(Value::to_json).collect());
    }
    let mut notes = Vec::new();
    if !field.description.is_empty() {
        notes.push(field.description.clone());
    }
    if matches!(field.field_type, FieldType::Date | FieldType::Timestamp) {
        // JSON Schema has no bounds for dates: say them
        if let Some(min) = bound(&rules.min) {
            notes.push(format!("not before {min}"));
        }
        if let Some(max) = bound(&rules.max) {
            notes.push(format!("not after {max}"));
        }
    }
    if !notes.is_empty() {
        object.insert("description".into(), json!(notes.join("; ")));
    }
    if let Some(default) = &field.default {
        object.insert("default".into(), default.to_json());
    }
    if nullable && field.field_type != FieldType::Json {
        let ty = object.remove("type").unwrap_or(json!("string"));
        object.insert("type".into(), json!([ty, "null"]));
    }
    schema
}

/// A dataset's three record schemas: as answered (every field), as written (required fields
/// without a default must be given), and the changes of a PATCH (fields outside the key).
pub(super) fn record_schemas(schema: &DatasetSchema) -> Vec<(String, Json)> {
    let key: Vec<&str> = schema.key_fields().map(|f| f.name.as_str()).collect();
    let properties = |fields: &mut dyn Iterator<Item = &FieldSchema>| -> Map<String, Json> {
        fields
            .map(|f| (f.name.clone(), field_schema(f, !f.required)))
            .collect()
    };
    let all = properties(&mut schema.fields.iter());
    let every: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let needed: Vec<&str> = schema
        .fields
        .iter()
        .filter(|f| f.required && f.default.is_none())
        .map(|f| f.name.as_str())
        .collect();
    let changeable = properties(
        &mut schema
            .fields
            .iter()
            .filter(|f| !key.contains(&f.name.as_str())),
    );
    let description = format!(
        "{} Primary key: {}.",
        schema.description.trim(),
        key.join(", ")
    );
    vec![
        (
            record_name(schema),
            json!({"type": "object", "description": description.trim(), "properties": all,
                   "required": every, "x-primary-key": key}),
        ),
        (
            row_name(schema),
            json!({"type": "object", "description": "A record in a page: the fields `select` names (every field without it).",
                   "properties": all.clone()}),
        ),
        (
            input_name(schema),
            json!({"type": "object", "description": description.trim(), "properties": all,
                   "required": needed, "additionalProperties": false}),
        ),
        (
            changes_name(schema),
            json!({"type": "object", "description": "New values of the fields named; key fields cannot change.",
                   "properties": changeable, "additionalProperties": false}),
        ),
    ]
}

/// The schemas every dataset shares.
pub(super) fn shared() -> Vec<(&'static str, Json)> {
    let names =
        |what: &str| json!({"type": "array", "items": {"type": "string"}, "description": what});
    let count = |what: &str| json!({"type": "object", "required": [what], "properties": {what: {"type": "integer", "minimum": 0}}});
    vec![
        (
            "problem",
            json!({
                "type": "object",
                "description": "RFC 9457 problem details. `type` is a page explaining the error; further members name what is at fault (`parameter`, `errors`, `keys`, `dataset`, `permission`, `rule`, `setting`...).",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string", "format": "uri-reference"},
                    "title": {"type": "string"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string"},
                    "parameter": {"type": "string"},
                    "errors": {"type": "array", "items": reference("violation")},
                    "total_errors": {"type": "integer"}
                }
            }),
        ),
        (
            "violation",
            json!({"type": "object", "required": ["row", "code", "message"], "properties": {
                "row": {"type": "integer", "description": "1-based record number in the request"},
                "field": {"type": ["string", "null"]},
                "code": {"type": "string"},
                "message": {"type": "string"}}}),
        ),
        (
            "write_summary",
            json!({"type": "object", "required": ["inserted", "updated", "skipped", "rejected"], "properties": {
                "inserted": {"type": "integer"}, "updated": {"type": "integer"},
                "skipped": {"type": "integer"}, "rejected": {"type": "integer"},
                "errors": {"type": "array", "items": reference("violation")},
                "total_errors": {"type": "integer"}}}),
        ),
        (
            "count",
            json!({"type": "object", "required": ["count", "exact"], "properties": {
                "count": {"type": "integer", "minimum": 0}, "exact": {"type": "boolean"}}}),
        ),
        ("updated", count("updated")),
        ("deleted", count("deleted")),
        (
            "groups",
            json!({"type": "object", "required": ["items", "truncated"], "properties": {
                "items": {"type": "array", "items": {"type": "object"}},
                "truncated": {"type": "boolean", "description": "more groups exist than the page holds"}}}),
        ),
        (
            "dataset",
            json!({"type": "object", "required": ["name", "fields", "primary_key"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "version": {"type": ["integer", "null"]},
                "primary_key": {"type": "array", "items": {"type": "string"}},
                "indexes": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                "cluster_by": {"type": "array", "items": {"type": "string"}},
                "permissions": names("what this credential may do to the dataset"),
                "fields": {"type": "array", "items": {"type": "object", "required": ["name", "type", "required", "operators", "metrics", "buckets"], "properties": {
                    "operators": names("the filter operators the field takes"),
                    "metrics": names("the aggregate functions of the field (count() aside)"),
                    "buckets": names("the time bucket units of the field (dates and timestamps)")}}}}}),
        ),
        (
            "credential",
            json!({"type": "object", "required": ["name", "grants"], "properties": {
                "name": {"type": "string"},
                "grants": {"type": "array", "items": {"type": "object", "required": ["dataset", "permissions"], "properties": {
                    "dataset": {"type": "string", "description": "a dataset's name, or `*` for every one"},
                    "permissions": names("read, write, update, delete, admin"),
                    "rule": {"type": ["string", "null"], "description": "the row rule: a filter every record it touches must pass"}}}}}}),
        ),
        (
            "datasets",
            json!({"type": "object", "required": ["datasets"], "properties": {
                "datasets": {"type": "array", "items": reference("dataset")}}}),
        ),
        (
            "status",
            json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}),
        ),
    ]
}
