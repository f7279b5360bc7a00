//! What the key index needs from the store it mirrors. The store is the record of the data: the
//! index is rebuilt from it, and writes the index acknowledged first are appended to it.

use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;

/// The store the key index mirrors. Each write it commits carries a sequence number, which the
/// index commits with the write's records: an index whose number differs from the store's at start
/// missed a write, and is rebuilt from the store.
pub trait MirroredStore {
    /// The sequence number of the last write the store holds.
    fn sequence(&self) -> Result<u64, StoreError>;

    /// Hands every stored record of `schema`'s dataset to `each` in key order, a batch (shaped as
    /// the schema) at a time.
    fn scan_in_key_order(
        &self,
        schema: &DatasetSchema,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// How many records `schema`'s dataset holds.
    fn count(&self, schema: &DatasetSchema) -> Result<u64, StoreError>;

    /// Appends writes the index acknowledged before the store held them, all or nothing, with
    /// `seq` as the store's sequence number after them.
    fn append(&self, writes: &[DeferredWrites], seq: u64) -> Result<(), StoreError>;
}

/// Deferred writes of one dataset on their way to its table.
#[derive(Clone)]
pub struct DeferredWrites {
    pub schema: Arc<DatasetSchema>,
    /// New records (their keys were not stored when they were written).
    pub appended: Vec<RecordBatch>,
    /// Keys (encoded by [`crate::KeyEncoder`]) whose stored rows are replaced by their latest
    /// record in `current`, or removed when it has none (updates and deletes by key).
    pub changed: Vec<Vec<u8>>,
    /// The latest records of the changed keys that still hold one.
    pub current: Vec<RecordBatch>,
}

impl DeferredWrites {
    /// Records and changed keys.
    pub fn rows(&self) -> usize {
        self.appended
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self.changed.len()
    }
}
