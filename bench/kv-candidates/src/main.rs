//! Candidate stores for the primary-key index, measured on the keys of generated well_production
//! rows: bulk insert in 100,000-key transactions, membership checks of 10,000-key batches (half
//! stored, half new, as a write's conflict check), random point reads, and size on disk.
//!
//! Usage: cargo run --release -- [KEYS]   (default 10,000,000)

use std::path::Path;
use std::time::Instant;

const BATCH: u64 = 100_000;
const CHECK_BATCH: u64 = 10_000;
const CHECKS: u64 = 50;
const READS: u64 = 1_000_000;

/// The composite key (field_code, well_code, production_period) of generated row `i`, as 24
/// order-preserving bytes.
fn key(i: u64) -> [u8; 24] {
    let well = 100_000 + (i / 924) as i64;
    let field = 1 + (well * 7919) % 2000;
    let month = (i % 924) as i64;
    let mut out = [0u8; 24];
    for (slot, v) in [field, well, month].into_iter().enumerate() {
        out[slot * 8..slot * 8 + 8].copy_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
    }
    out
}

/// A cheap reproducible shuffle of 0..n.
fn scatter(i: u64, n: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n
}

trait Candidate {
    fn name(&self) -> &'static str;
    fn insert_batch(&mut self, keys: &[[u8; 24]], first_seq: u64);
    fn contains(&self, key: &[u8; 24]) -> bool;
    fn count_existing(&self, keys: &[[u8; 24]]) -> usize {
        keys.iter().filter(|k| self.contains(k)).count()
    }
    fn flush(&mut self) {}
}

struct Redb(redb::Database);
const TABLE: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("keys");

impl Candidate for Redb {
    fn name(&self) -> &'static str {
        "redb 2"
    }
    fn insert_batch(&mut self, keys: &[[u8; 24]], first_seq: u64) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut table = tx.open_table(TABLE).unwrap();
            for (n, k) in keys.iter().enumerate() {
                table.insert(k.as_slice(), first_seq + n as u64).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn contains(&self, key: &[u8; 24]) -> bool {
        let tx = self.0.begin_read().unwrap();
        let table = tx.open_table(TABLE).unwrap();
        table.get(key.as_slice()).unwrap().is_some()
    }
    fn count_existing(&self, keys: &[[u8; 24]]) -> usize {
        let tx = self.0.begin_read().unwrap();
        let table = tx.open_table(TABLE).unwrap();
        keys.iter()
            .filter(|k| table.get(k.as_slice()).unwrap().is_some())
            .count()
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    keys: fjall::PartitionHandle,
}

impl Candidate for Fjall {
    fn name(&self) -> &'static str {
        "fjall 2"
    }
    fn insert_batch(&mut self, keys: &[[u8; 24]], first_seq: u64) {
        let mut batch = self.keyspace.batch();
        for (n, k) in keys.iter().enumerate() {
            batch.insert(
                &self.keys,
                k.as_slice(),
                (first_seq + n as u64).to_be_bytes(),
            );
        }
        batch.commit().unwrap();
        self.keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    fn contains(&self, key: &[u8; 24]) -> bool {
        self.keys.contains_key(key.as_slice()).unwrap()
    }
}

struct Lmdb {
    env: heed::Env,
    db: heed::Database<heed::types::Bytes, heed::types::U64<heed::byteorder::BE>>,
}

impl Candidate for Lmdb {
    fn name(&self) -> &'static str {
        "LMDB (heed 0.20)"
    }
    fn insert_batch(&mut self, keys: &[[u8; 24]], first_seq: u64) {
        let mut tx = self.env.write_txn().unwrap();
        for (n, k) in keys.iter().enumerate() {
            self.db
                .put(&mut tx, k.as_slice(), &(first_seq + n as u64))
                .unwrap();
        }
        tx.commit().unwrap();
    }
    fn contains(&self, key: &[u8; 24]) -> bool {
        let tx = self.env.read_txn().unwrap();
        self.db.get(&tx, key.as_slice()).unwrap().is_some()
    }
    fn count_existing(&self, keys: &[[u8; 24]]) -> usize {
        let tx = self.env.read_txn().unwrap();
        keys.iter()
            .filter(|k| self.db.get(&tx, k.as_slice()).unwrap().is_some())
            .count()
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn measure(store: &mut dyn Candidate, n: u64, dir: &Path) {
    let started = Instant::now();
    let mut buffer = Vec::with_capacity(BATCH as usize);
    for start in (0..n).step_by(BATCH as usize) {
        buffer.clear();
        buffer.extend((start..(start + BATCH).min(n)).map(key));
        store.insert_batch(&buffer, start);
    }
    store.flush();
    let load = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut found = 0;
    for c in 0..CHECKS {
        let keys: Vec<[u8; 24]> = (0..CHECK_BATCH)
            .map(|j| {
                if j % 2 == 0 {
                    key(scatter(c * CHECK_BATCH + j, n))
                } else {
                    key(n + c * CHECK_BATCH + j)
                }
            })
            .collect();
        found += store.count_existing(&keys);
    }
    let check = started.elapsed().as_secs_f64();
    assert_eq!(found as u64, CHECKS * CHECK_BATCH / 2);

    let started = Instant::now();
    let hits = (0..READS)
        .filter(|&j| store.contains(&key(scatter(j * 7 + 3, n))))
        .count();
    let reads = started.elapsed().as_secs_f64();
    assert_eq!(hits as u64, READS);

    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        store.name(),
        n as f64 / load,
        (CHECKS * CHECK_BATCH) as f64 / check,
        READS as f64 / reads,
        dir_size(dir) as f64 / 1048576.0
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    println!("{n} keys of 24 bytes, batches of {BATCH} per write transaction");
    println!();
    println!(
        "| store | insert keys/s | membership checks/s (10k-key batches) | random point reads/s | size on disk (MiB) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("keys.redb")).unwrap();
        measure(&mut Redb(db), n, dir.path());
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let keyspace = fjall::Config::new(dir.path()).open().unwrap();
        let keys = keyspace
            .open_partition("keys", fjall::PartitionCreateOptions::default())
            .unwrap();
        measure(&mut Fjall { keyspace, keys }, n, dir.path());
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(16 << 30)
                .max_dbs(1)
                .open(dir.path())
                .unwrap()
        };
        let mut tx = env.write_txn().unwrap();
        let db = env.create_database(&mut tx, Some("keys")).unwrap();
        tx.commit().unwrap();
        measure(&mut Lmdb { env, db }, n, dir.path());
    }
}
