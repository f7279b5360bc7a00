//! Every use case acts for a credential: it asks here whether the credential holds the permission
//! on the dataset, and narrows what it reads, changes or writes to the credential's row rule.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::access::{Access, Permission, Reach};
use dataforge_domain::change::{Change, Mutation, by_key};
use dataforge_domain::query::Predicate;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_domain::write::ConflictMode;

use crate::{App, AppError};

impl App {
    /// This application acting for `access` (a per-request copy: a few reference counts).
    pub fn acting_as(&self, access: Arc<Access>) -> App {
        App {
            access,
            ..self.clone()
        }
    }

    /// The credential the use cases act for.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The dataset, and the records `permission` reaches in it.
    pub(crate) fn reach(
        &self,
        dataset: &str,
        permission: Permission,
    ) -> Result<(Arc<DatasetSchema>, Reach), AppError> {
        let schema = self.dataset(dataset)?;
        let rows = self.access.rows(&schema, permission)?;
        Ok((schema, rows))
    }
}

/// `filter`, narrowed to the rows a rule reaches.
pub(crate) fn narrow(filter: &mut Predicate, rows: &Reach) {
    if let Reach::Ruled { rule, .. } = rows {
        let given = std::mem::replace(filter, Predicate::And(Vec::new()));
        *filter = Predicate::And(vec![rule.clone(), given]);
    }
}

/// Refuses a batch of records to write when one of them is outside the rule; `first_row` is the
/// batch's first record's number in the request.
pub(crate) fn check_batch(
    schema: &DatasetSchema,
    rows: &Reach,
    batch: &RecordBatch,
    first_row: u64,
) -> Result<(), AppError> {
    let Reach::Ruled { rule, text } = rows else {
        return Ok(());
    };
    for row in 0..batch.num_rows() {
        let value_of = |field: usize| {
            Value::from_array(schema.fields[field].field_type, batch.column(field), row)
        };
        if !rule.holds(&value_of) {
            let record = first_row + row as u64;
            return Err(outside(
                schema,
                text,
                format!(
                    "record {record} of the request is outside the row rule `{text}` of this credential; nothing was written"
                ),
            ));
        }
    }
    Ok(())
}

/// An update's selection, narrowed to the rule and to the records that stay inside it with the new
/// values; refused when no record could (the new values themselves break the rule).
pub(crate) fn narrow_update(
    schema: &DatasetSchema,
    filter: &mut Predicate,
    rows: &Reach,
    set: &[(usize, Value)],
) -> Result<(), AppError> {
    let Reach::Ruled { rule, text } = rows else {
        return Ok(());
    };
    let known = |field: usize| {
        set.iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.clone())
    };
    let after = rule.with_known(&known);
    if after.is_never() {
        return Err(outside(
            schema,
            text,
            format!(
                "the new values would move the records outside the row rule `{text}` of this credential; nothing was changed"
            ),
        ));
    }
    let given = std::mem::replace(filter, Predicate::And(Vec::new()));
    *filter = Predicate::And(vec![rule.clone(), given, after]);
    Ok(())
}

/// Refuses upserts and merges for a ruled credential: they could overwrite a stored record outside
/// the rule that has the same key.
pub(crate) fn check_conflict_mode(
    schema: &DatasetSchema,
    rows: &Reach,
    mode: ConflictMode,
) -> Result<(), AppError> {
    match (rows, mode) {
        (Reach::Ruled { text, .. }, ConflictMode::Upsert | ConflictMode::Merge) => Err(outside(
            schema,
            text,
            format!(
                "a credential with a row rule (`{text}`) may not upsert or merge, which could overwrite a stored record outside the rule; insert with on_conflict=error or ignore, or update the records"
            ),
        )),
        _ => Ok(()),
    }
}

fn outside(schema: &DatasetSchema, rule: &str, detail: String) -> AppError {
    AppError::OutsideRule {
        dataset: schema.name.clone(),
        rule: rule.to_owned(),
        detail,
    }
}

/// A change of the record with `key`, within the rule. A ruled change goes the way of changes by
/// filter: the writer's path by key looks at the key alone, not at the rule.
pub(crate) fn by_key_within(
    schema: &DatasetSchema,
    key: Vec<Value>,
    change: Change,
    reach: &Reach,
) -> Result<Mutation, AppError> {
    let mut mutation = by_key(schema, key, change);
    match &mutation.change {
        Change::Update(values) => {
            let values = values.clone();
            narrow_update(schema, &mut mutation.filter, reach, &values)?;
        }
        Change::Delete => narrow(&mut mutation.filter, reach),
    }
    if matches!(reach, Reach::Ruled { .. }) {
        mutation.key = None;
    }
    Ok(mutation)
}
