//! The journal of deferred writes as two files taking turns (`<db>.journal`, `<db>.journal2`), so
//! that DuckDB can take the entries of one while new groups are journaled in the other: when an
//! append of every entry up to a sequence number starts beside the job loop ([`super::appending`]),
//! new entries go to the other file, and the first file is emptied once DuckDB has committed that
//! sequence number. A start reads both files in sequence order; entries DuckDB already holds are
//! skipped there ([`dataforge_key_index::catch_up`]), so a file left unemptied by a crash costs nothing.

use std::path::{Path, PathBuf};

use dataforge_domain::ports::StoreError;
use dataforge_key_index::journal::{Entry, EntryBuf, Journal, JournalError};

/// Both journal files, one of them taking new entries.
pub(crate) struct Journals {
    files: [Journal; 2],
    /// The file new entries go to.
    active: usize,
    /// Per file, the greatest sequence number appended since it was emptied (`None`: empty).
    last: [Option<u64>; 2],
}

impl Journals {
    /// Where the two journal files of the database at `db_path` live (the first one is the
    /// journal of databases written before there were two).
    pub(crate) fn paths_for(db_path: &Path) -> [PathBuf; 2] {
        [
            crate::config::beside(db_path, ".journal"),
            crate::config::beside(db_path, ".journal2"),
        ]
    }

    /// Opens (or creates) both files and reads their whole entries, in sequence order.
    pub(crate) fn open(db_path: &Path) -> Result<(Journals, Vec<Entry>), StoreError> {
        let [first, second] = Self::paths_for(db_path);
        let (first, mut entries) = Journal::open(&first)?;
        let (second, more) = Journal::open(&second)?;
        entries.extend(more);
        entries.sort_by_key(|e| e.seq);
        let last = |file: &Journal| (!file.is_empty()).then_some(u64::MAX);
        let journals = Journals {
            last: [last(&first), last(&second)],
            files: [first, second],
            active: 0,
        };
        Ok((journals, entries))
    }

    /// Appends entry `seq` to the active file, synced (see [`Journal::append`]).
    pub(crate) fn append(&mut self, seq: u64, entry: &EntryBuf) -> Result<(), JournalError> {
        self.files[self.active].append(entry)?;
        let last = &mut self.last[self.active];
        *last = Some(last.map_or(seq, |l| l.max(seq)));
        Ok(())
    }

    /// The active file's length, to [`Self::undo_last`] back to.
    pub(crate) fn len(&self) -> u64 {
        self.files[self.active].len()
    }

    /// Removes the last entry appended (see [`Journal::undo_last`]). The file's greatest sequence
    /// number is left as it was: a file is then emptied a little later, never too early.
    pub(crate) fn undo_last(&mut self, len_before: u64) -> Result<(), JournalError> {
        self.files[self.active].undo_last(len_before)
    }

    /// Sends new entries to the other file, while DuckDB takes this one's; the other one is empty
    /// unless emptying it failed, and then its entries are older than DuckDB's sequence number.
    pub(crate) fn turn(&mut self) {
        self.active = 1 - self.active;
    }

    /// Empties each file whose every entry DuckDB holds, now that it committed sequence `seq`.
    pub(crate) fn held_through(&mut self, seq: u64) {
        for (file, last) in self.files.iter_mut().zip(&mut self.last) {
            if last.is_some_and(|l| l <= seq) {
                file.clear();
                *last = None;
            }
        }
    }

    /// Empties both files: DuckDB holds every entry.
    pub(crate) fn clear(&mut self) {
        self.held_through(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataforge_key_index::journal::SectionKind;

    fn entry(seq: u64) -> EntryBuf {
        let mut buf = EntryBuf::new(seq);
        let items: Vec<(&[u8], Option<&[u8]>)> = vec![(b"k", Some(b"r"))];
        buf.section("wells", SectionKind::New, items.into_iter());
        buf
    }

    fn seqs(db: &Path) -> Vec<u64> {
        Journals::open(db)
            .unwrap()
            .1
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn a_file_is_emptied_once_duckdb_holds_its_entries_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.duckdb");
        let (mut journals, entries) = Journals::open(&db).unwrap();
        assert!(entries.is_empty());
        journals.append(1, &entry(1)).unwrap();
        journals.append(2, &entry(2)).unwrap();
        // an append of 1..=2 starts: 3 and 4 go to the other file
        journals.turn();
        journals.append(3, &entry(3)).unwrap();
        journals.append(4, &entry(4)).unwrap();
        assert_eq!(seqs(&db), [1, 2, 3, 4], "both files read back, in order");
        journals.held_through(1);
        assert_eq!(seqs(&db), [1, 2, 3, 4], "entry 2 is not held yet");
        journals.held_through(2);
        assert_eq!(seqs(&db), [3, 4]);
        // the next append takes 3..=4 while 5 goes to the first file again
        journals.turn();
        journals.append(5, &entry(5)).unwrap();
        assert_eq!(seqs(&db), [3, 4, 5]);
        journals.held_through(4);
        assert_eq!(seqs(&db), [5]);
        journals.clear();
        assert_eq!(seqs(&db), Vec::<u64>::new());
    }

    #[test]
    fn entries_found_at_start_are_emptied_only_by_clear() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.duckdb");
        let (mut journals, _) = Journals::open(&db).unwrap();
        journals.append(7, &entry(7)).unwrap();
        journals.turn();
        journals.append(8, &entry(8)).unwrap();
        drop(journals);
        let (mut journals, entries) = Journals::open(&db).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8]);
        journals.held_through(100);
        assert_eq!(seqs(&db), [7, 8], "their sequence numbers are not known");
        journals.clear();
        assert_eq!(seqs(&db), Vec::<u64>::new());
    }
}
