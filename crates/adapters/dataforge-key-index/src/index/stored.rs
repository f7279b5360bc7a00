//! Where a dataset's records live in the key index: most in compressed blocks of records
//! consecutive in key order ([`crate::record_blocks`]), recent writes as one LMDB entry each.
//!
//! Rewriting a block (decompress, merge, compress) for every single-record write would cost more
//! than the write, so writes land as per-record entries (`recent`, as every record was before
//! blocks), a removed record that lives in a block leaves a tombstone (`removed`), and both are
//! folded into the blocks in bounded steps once there are more than [`folds_past`] of them (after
//! a commit, a few block ranges at a time, so a fold never holds the writer long). Large writes (a
//! load, a rebuild) go to the blocks directly. A lookup reads the recent entry, then the
//! tombstone, then the one block whose range holds the key: the block stored under the greatest
//! first key at or below it. Blocks partition the keys: a block's records lie between its first
//! key and the next block's.
//!
//! Crash safety is the index's own: all three live in the same LMDB environment and change in the
//! writer's transactions, so a fold commits with the write it follows or not at all; the index
//! is derived data, rebuilt from the store or caught up from the journal when it is behind.

use std::borrow::Cow;
use std::ops::Bound;
use std::sync::Arc;

use dataforge_domain::ports::StoreError;
use heed::types::{Bytes, Unit};
use heed::{Database, PutFlags, RoTxn, RwTxn};

use crate::error::index_error;
use crate::record_blocks::{BLOCK_BYTES, Block, Decoded, count, decode_cached};

/// Records (recent entries and incoming ones) one fold step takes at most, so that a step stays
/// short even when many recent entries share one block's range.
const FOLD_TAKES: usize = 16 * 1024;

/// Recent entries and tombstones a dataset keeps before folding: a floor, or a few per block,
/// so that a fold rewrites a block for several records rather than one.
const RECENT_FLOOR: u64 = 4096;
const RECENT_PER_BLOCK: u64 = 16;

/// Block ranges folded after one commit at most.
const FOLDS_PER_COMMIT: usize = 8;

/// The recent entries and tombstones past which `blocks` blocks are folded into.
fn folds_past(blocks: u64) -> u64 {
    RECENT_FLOOR.max(blocks * RECENT_PER_BLOCK)
}

/// A change to a record: its new value, or `None` to remove it.
pub(crate) type Change<'a> = (&'a [u8], Option<&'a [u8]>);

/// The block last decoded by a lookup, kept for the next lookup of a run in key order.
#[derive(Default)]
pub(crate) struct LastBlock(Option<(Vec<u8>, Arc<Decoded>)>);

/// The three LMDB databases of one dataset's records.
#[derive(Clone, Copy)]
pub(crate) struct StoredRecords {
    /// Recent writes: encoded key to the record's values (the databases of earlier formats).
    pub(crate) recent: Database<Bytes, Bytes>,
    /// Keys of records removed since the block holding them was written.
    removed: Database<Bytes, Unit>,
    /// A block's first key to the block (see [`crate::record_blocks`]).
    blocks: Database<Bytes, Bytes>,
}

/// A block stored under `first`, and the first key of the next one, if any: the block's range.
struct Range {
    block: Option<(Vec<u8>, Arc<Decoded>)>,
    next: Option<Vec<u8>>,
}

impl Range {
    fn holds(&self, key: &[u8]) -> bool {
        self.next.as_deref().is_none_or(|next| key < next)
    }
}

impl StoredRecords {
    /// Opens or creates the databases of `dataset` (the recent entries keep its own name).
    pub(crate) fn open(
        env: &heed::Env,
        tx: &mut RwTxn<'_>,
        dataset: &str,
    ) -> Result<Self, StoreError> {
        let recent = env
            .create_database(tx, Some(dataset))
            .map_err(index_error)?;
        let removed = env
            .create_database(tx, Some(&format!("{dataset}/removed")))
            .map_err(index_error)?;
        let blocks = env
            .create_database(tx, Some(&format!("{dataset}/blocks")))
            .map_err(index_error)?;
        Ok(StoredRecords {
            recent,
            removed,
            blocks,
        })
    }

    /// The LMDB databases each dataset has.
    pub(crate) const DATABASES: usize = 3;

    /// The values of the record under `key`; `last` keeps the block decoded for the next lookup.
    pub(crate) fn get<'t>(
        &self,
        tx: &'t RoTxn<'_>,
        key: &[u8],
        last: &mut LastBlock,
    ) -> Result<Option<Cow<'t, [u8]>>, StoreError> {
        if let Some(value) = self.recent.get(tx, key).map_err(index_error)? {
            return Ok(Some(Cow::Borrowed(value)));
        }
        if self.removed.get(tx, key).map_err(index_error)?.is_some() {
            return Ok(None);
        }
        Ok(self
            .in_block(tx, key, last)?
            .map(|value| Cow::Owned(value.to_vec())))
    }

    /// The value under `key` in the block whose range holds it, ignoring recent entries.
    fn in_block<'l>(
        &self,
        tx: &RoTxn<'_>,
        key: &[u8],
        last: &'l mut LastBlock,
    ) -> Result<Option<&'l [u8]>, StoreError> {
        let Some((first, stored)) = self
            .blocks
            .get_lower_than_or_equal_to(tx, key)
            .map_err(index_error)?
        else {
            return Ok(None);
        };
        let cached = last.0.as_ref().is_some_and(|(f, _)| f.as_slice() == first);
        if !cached {
            last.0 = Some((first.to_vec(), decode_cached(stored)?));
        }
        Ok(last.0.as_ref().and_then(|(_, decoded)| decoded.1.find(key)))
    }

    /// Stores a record as a recent entry (`flags`: appending past the greatest recent key).
    pub(crate) fn put(
        &self,
        tx: &mut RwTxn<'_>,
        key: &[u8],
        value: &[u8],
        flags: PutFlags,
    ) -> Result<(), StoreError> {
        self.recent
            .put_with_flags(tx, flags, key, value)
            .map_err(index_error)?;
        if !self.removed.is_empty(tx).map_err(index_error)? {
            self.removed.delete(tx, key).map_err(index_error)?;
        }
        Ok(())
    }

    /// Removes the record under `key`: its recent entry, and with a tombstone the one in a block.
    pub(crate) fn remove(
        &self,
        tx: &mut RwTxn<'_>,
        key: &[u8],
        last: &mut LastBlock,
    ) -> Result<(), StoreError> {
        self.recent.delete(tx, key).map_err(index_error)?;
        if self.in_block(tx, key, last)?.is_some() {
            self.removed.put(tx, key, &()).map_err(index_error)?;
        }
        Ok(())
    }

    /// Applies `changes` (sorted by key, each key once) to the blocks directly, with the recent
    /// entries and tombstones of the ranges they fall in: for large writes, whose records would
    /// only be folded again.
    pub(crate) fn write_to_blocks(
        &self,
        tx: &mut RwTxn<'_>,
        mut changes: &[Change<'_>],
    ) -> Result<(), StoreError> {
        while let Some(&(first, _)) = changes.first() {
            let taken = self.fold_range(tx, first, changes)?;
            changes = &changes[taken..];
        }
        Ok(())
    }

    /// Folds recent entries and tombstones into blocks, a few ranges at most, when there are more
    /// than [`folds_past`]; `cursor` is where the last step stopped (steps sweep the key order).
    pub(crate) fn fold_step(
        &self,
        tx: &mut RwTxn<'_>,
        cursor: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        for _ in 0..FOLDS_PER_COMMIT {
            let pending = self.recent.len(tx).map_err(index_error)?
                + self.removed.len(tx).map_err(index_error)?;
            if pending <= folds_past(self.blocks.len(tx).map_err(index_error)?) {
                return Ok(());
            }
            let from = match self.first_pending(tx, cursor)? {
                Some(key) => key,
                None => match self.first_pending(tx, &[])? {
                    Some(key) => key,
                    None => return Ok(()),
                },
            };
            self.fold_range(tx, &from, &[])?;
            // past the folded range: the next pending key at or after it is in another
            cursor.clone_from(&from);
            cursor.push(0);
        }
        Ok(())
    }

    /// The least recent or removed key at or after `from`.
    fn first_pending(&self, tx: &RoTxn<'_>, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let bounds = (at_or_after(from), Bound::Unbounded);
        let recent = self.recent.range(tx, &bounds).map_err(index_error)?.next();
        let removed = self.removed.range(tx, &bounds).map_err(index_error)?.next();
        let recent = recent.transpose().map_err(index_error)?.map(|(k, _)| k);
        let removed = removed.transpose().map_err(index_error)?.map(|(k, _)| k);
        Ok(match (recent, removed) {
            (Some(a), Some(b)) => Some(a.min(b).to_vec()),
            (a, b) => a.or(b).map(<[u8]>::to_vec),
        })
    }

    /// The block whose range holds `key` (the first block when none starts at or below it).
    fn range_of(&self, tx: &RoTxn<'_>, key: &[u8]) -> Result<Range, StoreError> {
        let found = match self
            .blocks
            .get_lower_than_or_equal_to(tx, key)
            .map_err(index_error)?
        {
            Some(found) => Some(found),
            None => self.blocks.first(tx).map_err(index_error)?,
        };
        let Some((first, stored)) = found else {
            return Ok(Range {
                block: None,
                next: None,
            });
        };
        let next = self
            .blocks
            .get_greater_than(tx, first)
            .map_err(index_error)?
            .map(|(k, _)| k.to_vec());
        Ok(Range {
            block: Some((first.to_vec(), decode_cached(stored)?)),
            next,
        })
    }

    /// Folds into the block whose range holds `from` the recent entries, tombstones and leading
    /// `changes` of that range (at most [`FOLD_TAKES`] records of each), writes the result as one
    /// or more blocks, and answers how many of `changes` it took.
    fn fold_range(
        &self,
        tx: &mut RwTxn<'_>,
        from: &[u8],
        changes: &[Change<'_>],
    ) -> Result<usize, StoreError> {
        let range = self.range_of(tx, from)?;
        // the first block's range reaches down to the least key (the empty key here)
        let start = match &range.block {
            Some((first, _)) if !self.is_first_block(tx, first)? => first.clone(),
            _ => Vec::new(),
        };
        // changes of the range, then recent entries below where the taken changes end
        let mut taken = changes
            .iter()
            .take(FOLD_TAKES)
            .take_while(|(k, _)| range.holds(k))
            .count();
        let mut end: Option<Vec<u8>> = match changes.get(taken) {
            Some((k, _)) if range.holds(k) => Some(k.to_vec()),
            _ => range.next.clone(),
        };
        let recent = self.recent_below(tx, &start, &mut end)?;
        taken = changes[..taken]
            .iter()
            .take_while(|(k, _)| below(end.as_deref(), k))
            .count();
        let removed = self.removed_below(tx, &start, end.as_deref())?;
        let merged = merge_pending(&recent, &removed, &changes[..taken]);
        let block = match &range.block {
            Some((_, decoded)) => decoded.1.merged(&merged),
            None => Block::default().merged(&merged),
        };
        let replaced = range.block.as_ref().map(|(first, _)| first.as_slice());
        self.replace(tx, (&start, end.as_deref()), replaced, block)?;
        Ok(taken)
    }

    /// The recent entries from `start` below `end`, at most [`FOLD_TAKES`] of them: when there are
    /// more, `end` is brought down to the first one left.
    fn recent_below(
        &self,
        tx: &RoTxn<'_>,
        start: &[u8],
        end: &mut Option<Vec<u8>>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut recent = Vec::new();
        let bounds = (at_or_after(start), Bound::Unbounded);
        for entry in self.recent.range(tx, &bounds).map_err(index_error)? {
            let (k, v) = entry.map_err(index_error)?;
            if !below(end.as_deref(), k) {
                break;
            }
            if recent.len() == FOLD_TAKES {
                *end = Some(k.to_vec());
                break;
            }
            recent.push((k.to_vec(), v.to_vec()));
        }
        Ok(recent)
    }

    /// The tombstones from `start` below `end`.
    fn removed_below(
        &self,
        tx: &RoTxn<'_>,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut removed = Vec::new();
        let bounds = (at_or_after(start), Bound::Unbounded);
        for entry in self.removed.range(tx, &bounds).map_err(index_error)? {
            let (k, ()) = entry.map_err(index_error)?;
            if !below(end, k) {
                break;
            }
            removed.push(k.to_vec());
        }
        Ok(removed)
    }

    /// Replaces the recent entries and tombstones from `start` below `end`, and the block that
    /// began at `replaced`, with `block` (cut into blocks of [`BLOCK_BYTES`]).
    fn replace(
        &self,
        tx: &mut RwTxn<'_>,
        (start, end): (&[u8], Option<&[u8]>),
        replaced: Option<&[u8]>,
        block: Block,
    ) -> Result<(), StoreError> {
        let bounds = (
            at_or_after(start),
            end.map_or(Bound::Unbounded, Bound::Excluded),
        );
        self.recent.delete_range(tx, &bounds).map_err(index_error)?;
        self.removed
            .delete_range(tx, &bounds)
            .map_err(index_error)?;
        if let Some(first) = replaced {
            self.blocks.delete(tx, first).map_err(index_error)?;
        }
        for part in block.split(BLOCK_BYTES) {
            if !part.is_empty() {
                self.blocks
                    .put(tx, part.key(0), &part.encode()?)
                    .map_err(index_error)?;
            }
        }
        Ok(())
    }

    fn is_first_block(&self, tx: &RoTxn<'_>, first: &[u8]) -> Result<bool, StoreError> {
        let least = self.blocks.first(tx).map_err(index_error)?;
        Ok(least.is_some_and(|(k, _)| k == first))
    }

    /// The number of records held: those in blocks, plus recent ones no block holds, less the
    /// tombstones (read at start, to compare with the table).
    pub(crate) fn count(&self, tx: &RoTxn<'_>) -> Result<u64, StoreError> {
        let mut records = 0u64;
        for entry in self.blocks.iter(tx).map_err(index_error)? {
            let (_, stored) = entry.map_err(index_error)?;
            records += count(stored)? as u64;
        }
        let mut last = LastBlock::default();
        for entry in self.recent.iter(tx).map_err(index_error)? {
            let (key, _) = entry.map_err(index_error)?;
            if self.in_block(tx, key, &mut last)?.is_none() {
                records += 1;
            }
        }
        for entry in self.removed.iter(tx).map_err(index_error)? {
            let (key, ()) = entry.map_err(index_error)?;
            if self.in_block(tx, key, &mut last)?.is_some() {
                records = records.saturating_sub(1);
            }
        }
        Ok(records)
    }

    /// Removes every record.
    pub(crate) fn clear(&self, tx: &mut RwTxn<'_>) -> Result<(), StoreError> {
        self.recent.clear(tx).map_err(index_error)?;
        self.removed.clear(tx).map_err(index_error)?;
        self.blocks.clear(tx).map_err(index_error)
    }
}

/// The lower bound of keys from `key` on; the empty key (LMDB takes no empty key) for all.
/// A key and its value, read out of LMDB.
type Entry = (Vec<u8>, Vec<u8>);

/// Whether `key` lies below `end` (`None`: no end).
fn below(end: Option<&[u8]>, key: &[u8]) -> bool {
    end.is_none_or(|e| key < e)
}

fn at_or_after(key: &[u8]) -> Bound<&[u8]> {
    if key.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(key)
    }
}

/// Recent entries, tombstones and incoming changes of one range as one sorted list of changes,
/// incoming ones first, then recent entries, then tombstones (a key is in at most one of the last
/// two).
fn merge_pending<'a>(
    recent: &'a [(Vec<u8>, Vec<u8>)],
    removed: &'a [Vec<u8>],
    incoming: &[Change<'a>],
) -> Vec<Change<'a>> {
    let mut all: Vec<Change<'a>> = incoming.to_vec();
    all.extend(
        recent
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
    );
    all.extend(removed.iter().map(|k| (k.as_slice(), None)));
    // stable: of equal keys, the first (incoming, then recent) is kept
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.dedup_by(|later, earlier| later.0 == earlier.0);
    all
}

#[cfg(test)]
mod tests;
