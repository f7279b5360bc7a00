//! Start-up after a stop of any kind: the journal's entries that the store's sequence number has
//! not reached (writes acknowledged before its tables held them) are appended to the store, in the
//! shape its tables still have, and the key index follows them or is rebuilt.

use std::collections::HashMap;
use std::sync::Arc;

use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::{Catalog, DatasetSchema};

use crate::index::{KeyIndex, REPLAY_CHUNK, refuse_replay};
use crate::journal::{Entry, SectionKind};
use crate::mirrored::{DeferredWrites, MirroredStore};
use crate::row_codec::decode_rows;

/// Brings the store up to the journal's `entries` (decoded with the `stored` schemas: migrations
/// run after this), then the index, and answers the store's sequence number.
pub fn catch_up(
    index: &KeyIndex,
    stored: &Catalog,
    store: &impl MirroredStore,
    entries: &[Entry],
) -> Result<u64, StoreError> {
    let before = store.sequence()?;
    let pending: Vec<&Entry> = entries.iter().filter(|e| e.seq > before).collect();
    if pending.is_empty() {
        return index.replay_legacy_log(stored, store, before);
    }
    if let Some((i, gap)) = pending
        .iter()
        .enumerate()
        .find(|(i, e)| e.seq != before + 1 + *i as u64)
    {
        return Err(StoreError::Internal(format!(
            "the journal lists write {} but not write {}, after the tables' last write {before}; \
             it does not belong to this database or was damaged",
            gap.seq,
            before + 1 + i as u64
        )));
    }
    let last = before + pending.len() as u64;
    store.append(&latest_writes(stored, &pending)?, last)?;
    tracing::info!(
        from = before + 1,
        to = last,
        "appended the journal's acknowledged writes to the tables"
    );
    index.follow(stored, &pending, last)?;
    index.replay_legacy_log(stored, store, last)
}

/// One dataset's writes over several entries: new records, and the latest record (or deletion)
/// of each changed key, in the order first seen.
struct Latest<'e> {
    schema: Arc<DatasetSchema>,
    new: Vec<&'e [u8]>,
    changed: Vec<(&'e [u8], Option<&'e [u8]>)>,
    changed_at: HashMap<&'e [u8], usize>,
}

impl<'e> Latest<'e> {
    fn change(&mut self, key: &'e [u8], record: Option<&'e [u8]>) {
        match self.changed_at.get(key) {
            Some(&at) => self.changed[at].1 = record,
            None => {
                self.changed_at.insert(key, self.changed.len());
                self.changed.push((key, record));
            }
        }
    }

    fn into_writes(self) -> Result<DeferredWrites, StoreError> {
        let decode = |records: &[&[u8]]| {
            records
                .chunks(REPLAY_CHUNK)
                .map(|chunk| decode_rows(&self.schema, chunk))
                .collect::<Result<Vec<_>, _>>()
        };
        let current: Vec<&[u8]> = self.changed.iter().filter_map(|(_, r)| *r).collect();
        Ok(DeferredWrites {
            appended: decode(&self.new)?,
            current: decode(&current)?,
            changed: self.changed.iter().map(|(k, _)| k.to_vec()).collect(),
            schema: Arc::clone(&self.schema),
        })
    }
}

/// The entries' writes per dataset, each key at its latest state (a record inserted after its
/// key was changed counts as a change).
fn latest_writes(stored: &Catalog, entries: &[&Entry]) -> Result<Vec<DeferredWrites>, StoreError> {
    let mut datasets: Vec<Latest<'_>> = Vec::new();
    for section in entries.iter().flat_map(|e| &e.sections) {
        let slot = match datasets
            .iter()
            .position(|d| d.schema.name == section.dataset)
        {
            Some(slot) => slot,
            None => {
                let schema = stored
                    .get(&section.dataset)
                    .ok_or_else(|| refuse_replay(&section.dataset, "no schema file declares it"))?;
                datasets.push(Latest {
                    schema: Arc::clone(schema),
                    new: Vec::new(),
                    changed: Vec::new(),
                    changed_at: HashMap::new(),
                });
                datasets.len() - 1
            }
        };
        let latest = &mut datasets[slot];
        for (key, record) in &section.items {
            let record = record.as_deref();
            match section.kind {
                SectionKind::New if !latest.changed_at.contains_key(key.as_slice()) => {
                    if let Some(record) = record {
                        latest.new.push(record);
                    }
                }
                _ => latest.change(key, record),
            }
        }
    }
    datasets.into_iter().map(Latest::into_writes).collect()
}
