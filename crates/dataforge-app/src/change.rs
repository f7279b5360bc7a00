//! The change commands: update and delete stored records, one by key or many by filter, and
//! replace one by key. Each is checked against the schema here and applied by the writer port as
//! one transaction.

use std::sync::Arc;

use dataforge_domain::access::{Permission, Reach};
use dataforge_domain::change::{
    Change, Mutated, Mutation, Selection, parse_selection_body, parse_selection_params, parse_set,
};
use dataforge_domain::query::parse_key;
use dataforge_domain::records::{BodyFormat, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::validate::{Violation, Violations};
use dataforge_domain::value::Value;
use dataforge_domain::write::{ConflictMode, ErrorMode, WriteOptions};
use serde_json::Value as Json;

use crate::access::{by_key_within, check_batch, narrow, narrow_update};
use crate::read::{Rows, all_fields, not_found};
use crate::{App, AppError};

/// What changing records needs: `update` with new values, `delete` without.
fn change_permission(update: bool) -> Permission {
    match update {
        true => Permission::Update,
        false => Permission::Delete,
    }
}

/// What `PUT .../records/{key}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// A stored record was replaced.
    Replaced,
    /// No record had the key; it was created.
    Created,
}

impl App {
    /// `PATCH`/`DELETE .../records?<filters>`: changes every record the URL's filters select.
    /// `set` is the body of an update, `None` for a delete. Answers the number changed.
    pub async fn change_where(
        &self,
        dataset: &str,
        params: &[(String, String)],
        set: Option<&Json>,
    ) -> Result<u64, AppError> {
        let (schema, reach) = self.reach(dataset, change_permission(set.is_some()))?;
        let selection = parse_selection_params(&schema, params)?;
        self.change_selected(schema, &reach, selection, set).await
    }

    /// `POST .../update` and `POST .../delete`: the same with a JSON filter tree in the body.
    pub async fn change_by_body(
        &self,
        dataset: &str,
        body: &Json,
        update: bool,
    ) -> Result<u64, AppError> {
        let (schema, reach) = self.reach(dataset, change_permission(update))?;
        let (selection, set) = parse_selection_body(&schema, body, update)?;
        self.change_selected(schema, &reach, selection, set).await
    }

    /// Updates (with the values of `set`) or deletes (without) the selected records.
    async fn change_selected(
        &self,
        schema: Arc<DatasetSchema>,
        reach: &Reach,
        mut selection: Selection,
        set: Option<&Json>,
    ) -> Result<u64, AppError> {
        let change = match set {
            Some(set) => {
                let values = parse_set(&schema, set).map_err(invalid)?;
                narrow_update(&schema, &mut selection.filter, reach, &values)?;
                Change::Update(values)
            }
            None => {
                narrow(&mut selection.filter, reach);
                Change::Delete
            }
        };
        Ok(self.mutate(schema, selection.with(change)).await?.changed)
    }

    /// `PATCH .../records/{key}`: updates the fields `set` names in the record with this key and
    /// answers the record as stored.
    pub async fn update_record(
        &self,
        dataset: &str,
        segments: &[&str],
        set: &Json,
    ) -> Result<Rows, AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Update)?;
        let key = parse_key(&schema, segments)?;
        let values = parse_set(&schema, set).map_err(invalid)?;
        let mutation = by_key_within(&schema, key, Change::Update(values), &reach)?;
        let mutated = self.mutate(Arc::clone(&schema), mutation).await?;
        match mutated.record {
            _ if mutated.changed == 0 => Err(not_found(&schema, segments)),
            Some(record) => Ok(Rows {
                columns: all_fields(&schema),
                batches: vec![record],
            }),
            None => self.stored_record(&schema, segments).await,
        }
    }

    /// `DELETE .../records/{key}`.
    pub async fn delete_record(&self, dataset: &str, segments: &[&str]) -> Result<(), AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Delete)?;
        let key = parse_key(&schema, segments)?;
        let mutation = by_key_within(&schema, key, Change::Delete, &reach)?;
        match self.mutate(Arc::clone(&schema), mutation).await?.changed {
            0 => Err(not_found(&schema, segments)),
            _ => Ok(()),
        }
    }

    /// `PUT .../records/{key}`: stores `record` (a JSON object) under the key, replacing the
    /// record stored there or creating it, and answers the record as stored. Key fields the body
    /// leaves out are taken from the path; those it gives must equal the path's. A replacement
    /// is an update by key of every other field (so it takes the path of changes by key, with no
    /// scan of the table); a key not stored is inserted as a POST would insert it.
    pub async fn replace_record(
        &self,
        dataset: &str,
        segments: &[&str],
        record: Json,
    ) -> Result<(Replaced, Rows), AppError> {
        let (schema, reach) = self.reach(dataset, Permission::Write)?;
        let key = parse_key(&schema, segments)?;
        let body = keyed_record(&schema, &key, record)?.to_string();
        let decoded = self.decode_record(&schema, body.as_bytes())?;
        check_batch(&schema, &reach, &decoded, 1)?;
        let values: Vec<(usize, Value)> = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| !schema.primary_key.contains(i))
            .map(|(i, f)| (i, Value::from_array(f.field_type, decoded.column(i), 0)))
            .collect();
        let created = WriteOptions {
            on_conflict: ConflictMode::Error,
            on_error: ErrorMode::Reject,
        };
        // a key inserted by another request between the two steps is replaced on the second try
        for _ in 0..2 {
            // a stored record outside the rule is not replaced: the insert below meets its key
            let replace =
                by_key_within(&schema, key.clone(), Change::Update(values.clone()), &reach)?;
            let mutated = self.mutate(Arc::clone(&schema), replace).await?;
            if mutated.changed > 0 {
                let rows = match mutated.record {
                    Some(record) => Rows {
                        columns: all_fields(&schema),
                        batches: vec![record],
                    },
                    None => self.stored_record(&schema, segments).await?,
                };
                return Ok((Replaced::Replaced, rows));
            }
            match self
                .ingest_small(
                    dataset,
                    BodyFormat::JSON,
                    &ReadOptions::default(),
                    body.as_bytes(),
                    created,
                )
                .await
            {
                Ok(_) => {
                    let rows = self.stored_record(&schema, segments).await?;
                    return Ok((Replaced::Created, rows));
                }
                Err(AppError::Conflict { .. }) if matches!(reach, Reach::All) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(AppError::Unavailable(
            "the record changed while it was being replaced; retry".into(),
        ))
    }

    async fn mutate(
        &self,
        schema: Arc<DatasetSchema>,
        mutation: Mutation,
    ) -> Result<Mutated, AppError> {
        let kind = match mutation.change {
            Change::Update(_) => "updated",
            Change::Delete => "deleted",
        };
        let mutated = self.writer.mutate(Arc::clone(&schema), mutation).await?;
        metrics::counter!("dataforge_rows_changed_total", "dataset" => schema.name.clone(), "change" => kind)
            .increment(mutated.changed);
        Ok(mutated)
    }
}

/// The body of a `PUT` with the path's key: missing key fields are filled in, differing ones are
/// a 422 naming the field.
fn keyed_record(schema: &DatasetSchema, key: &[Value], record: Json) -> Result<Json, AppError> {
    let Json::Object(mut object) = record else {
        return Err(invalid(one_violation(
            None,
            "not_an_object",
            "a PUT body is one record: a JSON object of field values".into(),
        )));
    };
    for (field, value) in schema.key_fields().zip(key) {
        match object.get(&field.name) {
            None => {
                object.insert(field.name.clone(), value.to_json());
            }
            Some(given) => {
                let given = Value::from_json(field.field_type, given).ok();
                if given.as_ref() != Some(value) {
                    return Err(invalid(one_violation(
                        Some(&field.name),
                        "key_mismatch",
                        format!(
                            "the body gives a key value that differs from the path's ({}); a key cannot be changed",
                            value.to_json()
                        ),
                    )));
                }
            }
        }
    }
    Ok(Json::Object(object))
}

fn one_violation(field: Option<&str>, code: &'static str, message: String) -> Violations {
    let mut violations = Violations::default();
    violations.push(Violation {
        row: 1,
        field: field.map(str::to_owned),
        code,
        message,
    });
    violations
}

fn invalid(violations: Violations) -> AppError {
    AppError::Invalid {
        total: violations.total(),
        violations: violations.into_listed(),
    }
}
