use std::collections::BTreeMap;

use super::*;

/// A fresh LMDB environment with one dataset's databases.
fn open() -> (tempfile::TempDir, heed::Env, StoredRecords) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = heed::EnvOpenOptions::new();
    options.map_size(256 << 20).max_dbs(3);
    // SAFETY: a new environment in a directory of this test's own
    let env = unsafe { options.open(dir.path()) }.unwrap();
    let mut tx = env.write_txn().unwrap();
    let records = StoredRecords::open(&env, &mut tx, "d").unwrap();
    tx.commit().unwrap();
    (dir, env, records)
}

fn key(i: u32) -> Vec<u8> {
    format!("well-{:06}/{:03}", i / 12, i % 12).into_bytes()
}

fn value(i: u32, version: u32) -> Vec<u8> {
    format!(
        "production {i} version {version} {}",
        "x".repeat((i % 17) as usize)
    )
    .into_bytes()
}

/// Every key of `expected` reads its value, keys around them read nothing, and the count agrees.
fn assert_holds(env: &heed::Env, records: &StoredRecords, expected: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let tx = env.read_txn().unwrap();
    let mut last = LastBlock::default();
    for (k, v) in expected {
        let got = records.get(&tx, k, &mut last).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(v.as_slice()),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    for i in (0..20_000).step_by(7) {
        let k = key(i);
        let got = records.get(&tx, &k, &mut LastBlock::default()).unwrap();
        assert_eq!(got.as_deref(), expected.get(&k).map(Vec::as_slice));
    }
    assert_eq!(records.count(&tx).unwrap(), expected.len() as u64);
}

/// Writes records `range` (version `version`) to the blocks directly, as a large write does.
fn bulk(env: &heed::Env, records: &StoredRecords, range: std::ops::Range<u32>, version: u32) {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = range.map(|i| (key(i), value(i, version))).collect();
    let changes: Vec<Change<'_>> = entries
        .iter()
        .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
        .collect();
    let mut tx = env.write_txn().unwrap();
    records.write_to_blocks(&mut tx, &changes).unwrap();
    tx.commit().unwrap();
}

fn blocks(env: &heed::Env, records: &StoredRecords) -> u64 {
    records.blocks.len(&env.read_txn().unwrap()).unwrap()
}

#[test]
fn a_bulk_load_is_stored_in_blocks_and_read_back() {
    let (_dir, env, records) = open();
    bulk(&env, &records, 0..10_000, 0);
    assert!(blocks(&env, &records) > 5);
    assert_eq!(records.recent.len(&env.read_txn().unwrap()).unwrap(), 0);
    let expected = (0..10_000).map(|i| (key(i), value(i, 0))).collect();
    assert_holds(&env, &records, &expected);
    // a second load in between and past the first replaces and adds, in any block
    bulk(&env, &records, 5_000..15_000, 1);
    let expected = (0..15_000)
        .map(|i| (key(i), value(i, u32::from(i >= 5_000))))
        .collect();
    assert_holds(&env, &records, &expected);
}

#[test]
fn recent_writes_and_removals_shadow_the_blocks_until_folded() {
    let (_dir, env, records) = open();
    bulk(&env, &records, 0..10_000, 0);
    let mut expected: BTreeMap<Vec<u8>, Vec<u8>> =
        (0..10_000).map(|i| (key(i), value(i, 0))).collect();
    let mut tx = env.write_txn().unwrap();
    let mut last = LastBlock::default();
    // replaced in a block, new between blocks' records, new past the last and before the first
    for i in (0..12_000).step_by(2) {
        records
            .put(&mut tx, &key(i), &value(i, 2), PutFlags::empty())
            .unwrap();
        expected.insert(key(i), value(i, 2));
    }
    records
        .put(&mut tx, b"a", b"first", PutFlags::empty())
        .unwrap();
    expected.insert(b"a".to_vec(), b"first".to_vec());
    // removed: from a block (a tombstone), a recent one, and one never stored
    for i in [1, 2, 3, 9_999, 11_998, 50_000] {
        records.remove(&mut tx, &key(i), &mut last).unwrap();
        expected.remove(&key(i));
    }
    tx.commit().unwrap();
    assert_holds(&env, &records, &expected);
    // a record put again after its removal is back
    let mut tx = env.write_txn().unwrap();
    records
        .put(&mut tx, &key(2), b"again", PutFlags::empty())
        .unwrap();
    expected.insert(key(2), b"again".to_vec());
    tx.commit().unwrap();
    assert_holds(&env, &records, &expected);
    // folding step by step until nothing is pending past the threshold keeps every answer
    let mut cursor = Vec::new();
    let mut tx = env.write_txn().unwrap();
    records.fold_step(&mut tx, &mut cursor).unwrap();
    tx.commit().unwrap();
    assert_holds(&env, &records, &expected);
    let tx = env.read_txn().unwrap();
    let pending = records.recent.len(&tx).unwrap() + records.removed.len(&tx).unwrap();
    assert!(
        pending <= folds_past(records.blocks.len(&tx).unwrap()),
        "{pending}"
    );
}

#[test]
fn folding_everything_leaves_only_blocks() {
    let (_dir, env, records) = open();
    let mut expected = BTreeMap::new();
    let mut tx = env.write_txn().unwrap();
    // no blocks yet: recent entries only, in no particular order
    for i in (0..9_000u32).map(|i| (i * 7919) % 9_000) {
        records
            .put(&mut tx, &key(i), &value(i, 0), PutFlags::empty())
            .unwrap();
        expected.insert(key(i), value(i, 0));
    }
    tx.commit().unwrap();
    assert_eq!(blocks(&env, &records), 0);
    assert_holds(&env, &records, &expected);
    let mut cursor = Vec::new();
    let mut tx = env.write_txn().unwrap();
    // a fold of everything: every step, whatever the threshold
    while records.first_pending(&tx, &[]).unwrap().is_some() {
        let from = records.first_pending(&tx, &cursor).unwrap();
        let from = from.unwrap_or_else(|| records.first_pending(&tx, &[]).unwrap().unwrap());
        records.fold_range(&mut tx, &from, &[]).unwrap();
        cursor = from;
        cursor.push(0);
    }
    tx.commit().unwrap();
    assert!(blocks(&env, &records) > 3);
    assert_holds(&env, &records, &expected);
    // removing every record through tombstones and folding leaves nothing at all
    let mut tx = env.write_txn().unwrap();
    let mut last = LastBlock::default();
    for k in expected.keys() {
        records.remove(&mut tx, k, &mut last).unwrap();
    }
    while let Some(from) = records.first_pending(&tx, &[]).unwrap() {
        records.fold_range(&mut tx, &from, &[]).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(blocks(&env, &records), 0);
    assert_holds(&env, &records, &BTreeMap::new());
}

#[test]
fn a_bulk_removal_empties_the_blocks_it_covers() {
    let (_dir, env, records) = open();
    bulk(&env, &records, 0..10_000, 0);
    let keys: Vec<Vec<u8>> = (0..8_000).map(key).collect();
    let changes: Vec<Change<'_>> = keys.iter().map(|k| (k.as_slice(), None)).collect();
    let mut tx = env.write_txn().unwrap();
    records.write_to_blocks(&mut tx, &changes).unwrap();
    tx.commit().unwrap();
    let expected = (8_000..10_000).map(|i| (key(i), value(i, 0))).collect();
    assert_holds(&env, &records, &expected);
}
