//! Blocks of records, compressed together: the form most of the key index keeps its records in.
//!
//! One LMDB entry per record costs its key, LMDB's node header and page slack besides the value
//! (about 130 bytes a `well_production` record, three times DuckDB's compressed table), and a
//! record alone compresses poorly. A block holds a few hundred records consecutive in key order, so
//! that zstd finds what neighbouring records share (a well's key prefix, a field's values). A
//! block is read whole: a lookup decompresses it and searches its keys, which costs tens of
//! microseconds, so blocks are kept to [`BLOCK_BYTES`] uncompressed.
//!
//! Stored form: the record count (u32 little-endian, read without decompressing, to count
//! records), the uncompressed length (u32 little-endian), then the zstd frame of: per record, the
//! length of the prefix its key shares with the previous key, the length of the rest of its key
//! and the length of its value (LEB128 varints); then every key's rest, then every value.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use dataforge_domain::ports::StoreError;

/// Uncompressed bytes a block is cut at: large enough for zstd to compress well (and for LMDB's
/// overflow pages to waste little of the last page), small enough to decompress in a few tens of
/// microseconds for a lookup.
pub(crate) const BLOCK_BYTES: usize = 32 << 10;

/// zstd level of blocks: decompression speed does not depend on it; 3 is zstd's default.
const LEVEL: i32 = 3;

/// The bytes before the compressed frame: record count and uncompressed length.
const HEADER: usize = 8;

fn broken(what: &str) -> StoreError {
    StoreError::Internal(format!(
        "a block of records in the key index is broken: {what}"
    ))
}

/// Records in key order, decoded: keys and values each in one buffer, with where each ends.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Block {
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    values: Vec<u8>,
    value_ends: Vec<usize>,
}

impl Block {
    pub(crate) fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// Bytes of keys and values held (the uncompressed size, near enough, for cutting blocks).
    pub(crate) fn bytes(&self) -> usize {
        self.keys.len() + self.values.len()
    }

    pub(crate) fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    pub(crate) fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.value_ends[i - 1] };
        &self.values[start..self.value_ends[i]]
    }

    /// Appends a record; its key must be greater than every key held.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(self.is_empty() || key > self.key(self.len() - 1));
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
        self.values.extend_from_slice(value);
        self.value_ends.push(self.values.len());
    }

    /// The value under `key`, by binary search.
    pub(crate) fn find(&self, key: &[u8]) -> Option<&[u8]> {
        let i = self.position(key).ok()?;
        Some(self.value(i))
    }

    /// Where `key` is (`Ok`) or would be put (`Err`).
    fn position(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = (low + high) / 2;
            match self.key(middle).cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.len()).map(|i| (self.key(i), self.value(i)))
    }

    /// This block with `changes` (sorted by key, each key once) applied: a value replaces or adds
    /// the record under its key, `None` removes it.
    pub(crate) fn merged(&self, changes: &[(&[u8], Option<&[u8]>)]) -> Block {
        let mut out = Block::default();
        let mut held = self.iter().peekable();
        for &(key, change) in changes {
            while let Some(&(k, v)) = held.peek() {
                if k >= key {
                    break;
                }
                out.push(k, v);
                held.next();
            }
            if held.peek().is_some_and(|&(k, _)| k == key) {
                held.next();
            }
            if let Some(value) = change {
                out.push(key, value);
            }
        }
        for (k, v) in held {
            out.push(k, v);
        }
        out
    }

    /// This block cut into blocks of about `target` bytes each (between 3/4 and 3/2 of it, unless
    /// there is less in all), so that a block grown by a fold is split without leaving a sliver.
    pub(crate) fn split(self, target: usize) -> Vec<Block> {
        let parts = self.bytes().div_ceil(target + target / 2).max(1);
        if parts == 1 {
            return vec![self];
        }
        let each = self.bytes().div_ceil(parts);
        let mut blocks = vec![Block::default()];
        for (key, value) in self.iter() {
            let last = blocks.len() - 1;
            if blocks[last].bytes() >= each && blocks.len() < parts {
                blocks.push(Block::default());
            }
            let last = blocks.len() - 1;
            blocks[last].push(key, value);
        }
        blocks
    }

    /// The stored form (see the module docs).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut raw = Vec::with_capacity(self.bytes() + 3 * self.len());
        let mut previous: &[u8] = &[];
        for (key, value) in self.iter() {
            let shared = key.iter().zip(previous).take_while(|(a, b)| a == b).count();
            put_varint(&mut raw, shared);
            put_varint(&mut raw, key.len() - shared);
            put_varint(&mut raw, value.len());
            previous = key;
        }
        let mut previous: &[u8] = &[];
        for (key, _) in self.iter() {
            let shared = key.iter().zip(previous).take_while(|(a, b)| a == b).count();
            raw.extend_from_slice(&key[shared..]);
            previous = key;
        }
        raw.extend_from_slice(&self.values);
        let frame = zstd::bulk::compress(&raw, LEVEL)
            .map_err(|e| StoreError::Internal(format!("compressing a block of records: {e}")))?;
        let mut stored = Vec::with_capacity(HEADER + frame.len());
        stored.extend_from_slice(&(self.len() as u32).to_le_bytes());
        stored.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        stored.extend_from_slice(&frame);
        Ok(stored)
    }

    /// A block from its stored form.
    pub(crate) fn decode(stored: &[u8]) -> Result<Block, StoreError> {
        let count = count(stored)?;
        let raw_len = u32::from_le_bytes(header_word(stored, 4)?) as usize;
        let raw = decompress(&stored[HEADER..], raw_len)?;
        let mut lengths = raw.as_slice();
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let shared = take_varint(&mut lengths)?;
            let rest = take_varint(&mut lengths)?;
            let value = take_varint(&mut lengths)?;
            entries.push((shared, rest, value));
        }
        let mut block = Block {
            keys: Vec::with_capacity(count * 32),
            key_ends: Vec::with_capacity(count),
            values: Vec::new(),
            value_ends: Vec::with_capacity(count),
        };
        let mut data = lengths;
        let mut previous_start = 0;
        for &(shared, rest, _) in &entries {
            let start = block.keys.len();
            if shared > start - previous_start {
                return Err(broken("a key shares more than the previous key holds"));
            }
            block
                .keys
                .extend_from_within(previous_start..previous_start + shared);
            block.keys.extend_from_slice(take(&mut data, rest)?);
            block.key_ends.push(block.keys.len());
            previous_start = start;
        }
        let mut end = 0;
        for &(_, _, value) in &entries {
            end += value;
            block.value_ends.push(end);
        }
        block.values = take(&mut data, end)?.to_vec();
        if !data.is_empty() {
            return Err(broken("bytes past its last value"));
        }
        Ok(block)
    }
}

/// A block's stored form, and the block.
pub(crate) type Decoded = (Vec<u8>, Block);

/// Blocks decoded last, by any thread, with their stored form: writes land in a few blocks (a new
/// period for a well, new wells past the last), so the writer's key checks and the lookups of
/// records it changes decode the same blocks again and again.
static DECODED: parking_lot::Mutex<VecDeque<Arc<Decoded>>> =
    parking_lot::Mutex::new(VecDeque::new());

/// Blocks [`DECODED`] keeps (a block takes about 50 KiB there).
const DECODED_BLOCKS: usize = 16;

/// [`Block::decode`], answered from the blocks decoded last when one of them was stored as
/// `stored` (compared whole: a block's stored form decides its records).
pub(crate) fn decode_cached(stored: &[u8]) -> Result<Arc<Decoded>, StoreError> {
    let hit = DECODED
        .lock()
        .iter()
        .find(|d| d.0.len() == stored.len())
        .cloned();
    if let Some(decoded) = hit.filter(|d| d.0 == stored) {
        return Ok(decoded);
    }
    let decoded = Arc::new((stored.to_vec(), Block::decode(stored)?));
    let mut cache = DECODED.lock();
    if cache.len() == DECODED_BLOCKS {
        cache.pop_back();
    }
    cache.push_front(Arc::clone(&decoded));
    Ok(decoded)
}

/// The number of records a stored block holds, read without decompressing it.
pub(crate) fn count(stored: &[u8]) -> Result<usize, StoreError> {
    Ok(u32::from_le_bytes(header_word(stored, 0)?) as usize)
}

fn header_word(stored: &[u8], at: usize) -> Result<[u8; 4], StoreError> {
    stored
        .get(at..at + 4)
        .and_then(|w| w.try_into().ok())
        .ok_or_else(|| broken("cut short"))
}

thread_local! {
    /// A decompression context per thread: making one costs more than decompressing a block.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn decompress(frame: &[u8], raw_len: usize) -> Result<Vec<u8>, StoreError> {
    let failed = |e: std::io::Error| broken(&e.to_string());
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(d) => d,
            None => cell.insert(zstd::bulk::Decompressor::new().map_err(failed)?),
        };
        let raw = decompressor.decompress(frame, raw_len).map_err(failed)?;
        if raw.len() == raw_len {
            Ok(raw)
        } else {
            Err(broken("another length than recorded"))
        }
    })
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<usize, StoreError> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or_else(|| broken("cut short"))?;
        *bytes = rest;
        n |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(n);
        }
    }
    Err(broken("a length too long"))
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
    if bytes.len() < n {
        return Err(broken("cut short"));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys sharing prefixes, as encoded keys do (a field, a well, a period), with values
    /// of varied lengths.
    fn records(n: usize) -> Block {
        let mut block = Block::default();
        for i in 0..n {
            let key = format!("field-{:03}/well-{:06}/{:04}", i / 500, i / 7, i % 7);
            let value = format!("value {i} {}", "x".repeat(i % 13));
            block.push(key.as_bytes(), value.as_bytes());
        }
        block
    }

    #[test]
    fn a_block_reads_back_as_written_and_compresses() {
        let block = records(1000);
        let stored = block.encode().unwrap();
        assert_eq!(count(&stored).unwrap(), 1000);
        assert!(
            stored.len() * 3 < block.bytes(),
            "{} of {}",
            stored.len(),
            block.bytes()
        );
        assert_eq!(Block::decode(&stored).unwrap(), block);
    }

    #[test]
    fn an_empty_block_reads_back_empty() {
        let stored = Block::default().encode().unwrap();
        assert_eq!(count(&stored).unwrap(), 0);
        let block = Block::decode(&stored).unwrap();
        assert!(block.is_empty());
        assert_eq!(block.find(b"any"), None);
        assert_eq!(block.split(BLOCK_BYTES).len(), 1);
    }

    #[test]
    fn lookups_find_the_first_and_last_records_and_nothing_past_them() {
        let block = Block::decode(&records(300).encode().unwrap()).unwrap();
        let (first, last) = (block.key(0).to_vec(), block.key(299).to_vec());
        assert_eq!(block.find(&first), Some(block.value(0)));
        assert_eq!(block.find(&last), Some(block.value(299)));
        assert_eq!(block.find(b"field-000/well-000000/000"), None);
        assert_eq!(block.find(b"a"), None);
        assert_eq!(block.find(b"z"), None);
        let mut past = last.clone();
        past.push(0);
        assert_eq!(block.find(&past), None);
    }

    #[test]
    fn merging_inserts_in_the_middle_replaces_and_removes() {
        let block = records(10);
        let (third, fifth, last) = (block.key(2).to_vec(), block.key(4).to_vec(), block.key(9));
        let mut between = third.clone();
        between.push(b'!');
        let mut after = last.to_vec();
        after.push(b'~');
        let changes: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"a-first", Some(b"new first")),
            (&third, None),
            (&between, Some(b"inserted")),
            (&fifth, Some(b"replaced")),
            (b"field-999/absent", None),
            (&after, Some(b"new last")),
        ];
        let merged = block.merged(&changes);
        assert_eq!(merged.len(), 12);
        assert_eq!(merged.find(b"a-first"), Some(&b"new first"[..]));
        assert_eq!(merged.find(&third), None);
        assert_eq!(merged.find(&between), Some(&b"inserted"[..]));
        assert_eq!(merged.find(&fifth), Some(&b"replaced"[..]));
        assert_eq!(merged.find(&after), Some(&b"new last"[..]));
        assert_eq!(merged.find(block.key(5)), Some(block.value(5)));
        let keys: Vec<&[u8]> = merged.iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // removing every record leaves an empty block
        let all: Vec<(&[u8], Option<&[u8]>)> = block.iter().map(|(k, _)| (k, None)).collect();
        assert!(block.merged(&all).is_empty());
    }

    #[test]
    fn splitting_cuts_even_blocks_in_key_order() {
        let block = records(5000);
        let whole = block.clone();
        let parts = block.split(BLOCK_BYTES);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(part.bytes() >= BLOCK_BYTES * 3 / 4 && part.bytes() <= BLOCK_BYTES * 3 / 2);
        }
        let joined: Vec<(&[u8], &[u8])> = parts.iter().flat_map(|p| p.iter()).collect();
        assert_eq!(joined, whole.iter().collect::<Vec<_>>());
        // a block a little over the target stays whole
        let small = records(10);
        let bytes = small.bytes();
        assert_eq!(small.split(bytes - 1).len(), 1);
    }

    #[test]
    fn a_block_decoded_again_comes_from_the_cache_and_another_is_decoded() {
        let (one, two) = (records(40), records(41));
        let (stored_one, stored_two) = (one.encode().unwrap(), two.encode().unwrap());
        let first = decode_cached(&stored_one).unwrap();
        let again = decode_cached(&stored_one).unwrap();
        assert!(Arc::ptr_eq(&first, &again) || first.1 == again.1);
        assert_eq!(again.1, one);
        assert_eq!(decode_cached(&stored_two).unwrap().1, two);
    }

    #[test]
    fn a_broken_block_is_an_error_not_a_panic() {
        let stored = records(50).encode().unwrap();
        assert!(Block::decode(&stored[..4]).is_err());
        assert!(Block::decode(&stored[..stored.len() - 3]).is_err());
        let mut wrong_count = stored.clone();
        wrong_count[0] = 51;
        assert!(Block::decode(&wrong_count).is_err());
    }
}
