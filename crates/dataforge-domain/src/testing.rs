//! Schemas for unit tests, built through the same checks as real ones.

use serde_json::json;

use crate::schema::{DatasetDraft, DatasetSchema, FieldDraft, Located, build_catalog};

pub fn field(name: &str, ty: &str) -> FieldDraft {
    FieldDraft {
        name: Some(Located::new(name.into(), Some(1))),
        field_type: Some(Located::new(ty.into(), Some(1))),
        ..FieldDraft::default()
    }
}

pub fn dataset(name: &str, fields: Vec<FieldDraft>, key: &[&str]) -> DatasetDraft {
    DatasetDraft {
        origin: "test.toml".into(),
        line: Some(1),
        name: Some(Located::new(name.into(), Some(1))),
        description: None,
        fields,
        primary_key: Some(Located::new(
            key.iter().map(|k| k.to_string()).collect(),
            Some(1),
        )),
        indexes: vec![],
        cluster_by: None,
        partition_by: None,
        timezone: None,
    }
}

/// A small dataset with one field of each kind: `well_code` (key), `field_code`, `name`,
/// `period`, `oil` (min 0), `note`, `active`, `extra` (json).
pub fn wells() -> std::sync::Arc<DatasetSchema> {
    let mut oil = field("oil", "float");
    oil.min = Some(Located::new(json!(0), Some(1)));
    let fields = vec![
        field("well_code", "integer"),
        field("field_code", "integer"),
        field("name", "string"),
        field("period", "timestamp"),
        oil,
        field("note", "string"),
        field("active", "boolean"),
        field("extra", "json"),
    ];
    let catalog =
        build_catalog(&[dataset("wells", fields, &["well_code"])]).expect("test schema is valid");
    catalog.get("wells").expect("built").clone()
}
