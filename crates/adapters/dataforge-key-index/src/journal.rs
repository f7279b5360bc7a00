//! The journal of deferred writes: the durable copy of every write acknowledged before its table
//! holds it. A deferred group's records (and the latest records of keys changed by key) are
//! appended here and synced to disk before the answer, then written to the key index, which is
//! derived data that may be deleted or rebuilt at any time. An append to the store that records
//! the group's sequence number makes its entries obsolete, and the journal is emptied then; a start
//! appends to the store whatever entries its sequence number has not reached.
//!
//! The file is a sequence of frames: payload length (u32 LE), CRC-32 of the payload (u32 LE),
//! payload. A payload is the sequence number (u64 LE) then sections, each a dataset name
//! (u16 LE length, UTF-8), a kind (0 new records, 1 changed keys), an item count (u32 LE) and per
//! item a key and a record (u32 LE length then bytes; a record of length `u32::MAX` is a deleted
//! key), in the key index's encodings. A frame cut short or failing its CRC ends the journal: it
//! was being written when the process stopped, so it was never acknowledged.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dataforge_domain::ports::StoreError;

/// Marks a deleted key where a record's length would be.
const DELETED: u32 = u32::MAX;

/// Frame header bytes: payload length and CRC.
const FRAME_HEADER: usize = 8;

/// What a section of an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// Records whose keys were not stored.
    New,
    /// Keys updated (their whole latest record) or deleted by key.
    Changed,
}

/// One dataset's part of a journal entry: encoded keys and records (`None`: deleted).
#[derive(Debug, PartialEq, Eq)]
pub struct Section {
    pub dataset: String,
    pub kind: SectionKind,
    pub items: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// One deferred write group, as read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub sections: Vec<Section>,
}

/// An entry being encoded for [`Journal::append`].
pub struct EntryBuf(Vec<u8>);

impl EntryBuf {
    pub fn new(seq: u64) -> Self {
        let mut payload = Vec::with_capacity(4096);
        payload.extend_from_slice(&seq.to_le_bytes());
        EntryBuf(payload)
    }

    /// Adds a section; `items` yields each encoded key with its encoded record.
    pub fn section<'a>(
        &mut self,
        dataset: &str,
        kind: SectionKind,
        items: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) {
        let buf = &mut self.0;
        buf.extend_from_slice(&(dataset.len() as u16).to_le_bytes());
        buf.extend_from_slice(dataset.as_bytes());
        buf.push(match kind {
            SectionKind::New => 0,
            SectionKind::Changed => 1,
        });
        buf.extend_from_slice(&(items.len() as u32).to_le_bytes());
        for (key, record) in items {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            match record {
                Some(record) => {
                    buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
                    buf.extend_from_slice(record);
                }
                None => buf.extend_from_slice(&DELETED.to_le_bytes()),
            }
        }
    }
}

/// Why an append to the journal failed; nothing of the entry counts as written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the disk holding {path} is full")]
    Full { path: String },
    #[error("cannot write the journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Full { path } => StoreError::StorageFull(path),
            JournalError::Io { .. } => StoreError::Internal(e.to_string()),
        }
    }
}

/// The open journal file, positioned after its last whole entry.
pub struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal and reads its whole entries; a torn last frame is cut off.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Entry>), StoreError> {
        let failed = |e: std::io::Error| {
            StoreError::Internal(format!("cannot open the journal {}: {e}", path.display()))
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(failed)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(failed)?;
        let (entries, whole) = read_entries(&bytes);
        if whole < bytes.len() {
            tracing::warn!(
                journal = %path.display(),
                bytes = bytes.len() - whole,
                "the journal ends in an entry cut short (a write that was never acknowledged); it is dropped"
            );
            file.set_len(whole as u64).map_err(failed)?;
        }
        file.seek(SeekFrom::Start(whole as u64)).map_err(failed)?;
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            len: whole as u64,
        };
        Ok((journal, entries))
    }

    /// Appends an entry and syncs it to disk: once this answers, the entry survives a crash. It is
    /// written at the end of the whole entries, so a frame left torn by a failed append (whose cut
    /// failed too) is overwritten by the next one, and a start stops reading at it.
    pub fn append(&mut self, entry: &EntryBuf) -> Result<(), JournalError> {
        let payload = &entry.0;
        let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&frame))
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::warn!(journal = %self.path.display(), error = %cut, "could not cut a failed append off the journal; the next append overwrites it");
                }
                Err(self.error(e))
            }
        }
    }

    /// Removes the last appended entry (its group could not be applied to the key index, so it
    /// was not acknowledged), given the length before it. An error means the entry may still be
    /// on disk, where a start would replay it.
    pub fn undo_last(&mut self, len_before: u64) -> Result<(), JournalError> {
        self.file
            .set_len(len_before)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(e))?;
        self.len = len_before;
        Ok(())
    }

    /// The journal's length, to [`Self::undo_last`] back to.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the journal once the store holds every entry. Not synced, and a failure only logged:
    /// entries left are older than the store's sequence number, skipped at start, and the next
    /// append overwrites them from the start of the file.
    pub fn clear(&mut self) {
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!(journal = %self.path.display(), error = %e, "could not empty the journal");
        }
        self.len = 0;
    }

    fn error(&self, e: std::io::Error) -> JournalError {
        let path = self.path.display().to_string();
        if crate::error::disk_full(&e) {
            JournalError::Full { path }
        } else {
            JournalError::Io { path, source: e }
        }
    }
}

/// The whole entries at the start of `bytes`, and how many bytes they take.
fn read_entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(entry) = decode_entry(payload) else {
            break;
        };
        entries.push(entry);
        at += FRAME_HEADER + len;
    }
    (entries, at)
}

/// Reads what a slice holds, front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn decode_entry(payload: &[u8]) -> Option<Entry> {
    let mut cursor = Cursor(payload);
    let seq = cursor.u64()?;
    let mut sections = Vec::new();
    while !cursor.0.is_empty() {
        let name_len = cursor.u16()? as usize;
        let dataset = std::str::from_utf8(cursor.take(name_len)?).ok()?.to_owned();
        let kind = match cursor.take(1)?[0] {
            0 => SectionKind::New,
            1 => SectionKind::Changed,
            _ => return None,
        };
        let count = cursor.u32()? as usize;
        // every item takes at least 8 bytes: a count larger than the rest is a broken entry
        if count > cursor.0.len() / 8 {
            return None;
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let key_len = cursor.u32()? as usize;
            let key = cursor.take(key_len)?.to_vec();
            let record = match cursor.u32()? {
                DELETED => None,
                len => Some(cursor.take(len as usize)?.to_vec()),
            };
            items.push((key, record));
        }
        sections.push(Section {
            dataset,
            kind,
            items,
        });
    }
    Some(Entry { seq, sections })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> EntryBuf {
        let mut buf = EntryBuf::new(seq);
        let items: Vec<(&[u8], Option<&[u8]>)> = vec![(b"k1", Some(b"r1")), (b"k2", None)];
        buf.section("wells", SectionKind::Changed, items.into_iter());
        let new: Vec<(&[u8], Option<&[u8]>)> = vec![(b"k3", Some(b"record three"))];
        buf.section("production", SectionKind::New, new.into_iter());
        buf
    }

    fn expected(seq: u64) -> Entry {
        Entry {
            seq,
            sections: vec![
                Section {
                    dataset: "wells".into(),
                    kind: SectionKind::Changed,
                    items: vec![
                        (b"k1".to_vec(), Some(b"r1".to_vec())),
                        (b"k2".to_vec(), None),
                    ],
                },
                Section {
                    dataset: "production".into(),
                    kind: SectionKind::New,
                    items: vec![(b"k3".to_vec(), Some(b"record three".to_vec()))],
                },
            ],
        }
    }

    #[test]
    fn entries_read_back_as_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.journal");
        let (mut journal, entries) = Journal::open(&path).unwrap();
        assert!(entries.is_empty());
        journal.append(&entry(7)).unwrap();
        journal.append(&entry(8)).unwrap();
        drop(journal);
        let (_, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries, vec![expected(7), expected(8)]);
    }

    #[test]
    fn a_torn_or_damaged_last_frame_ends_the_journal_and_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.journal");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(&entry(1)).unwrap();
        let whole = journal.len();
        journal.append(&entry(2)).unwrap();
        drop(journal);
        for cut in [whole + 3, whole + 20] {
            let file = File::options().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            let (journal, entries) = Journal::open(&path).unwrap();
            assert_eq!(entries, vec![expected(1)]);
            assert_eq!(journal.len(), whole);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        }
        // a flipped byte inside the last frame fails its CRC
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(&entry(2)).unwrap();
        drop(journal);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (_, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries, vec![expected(1)]);
    }

    #[test]
    fn undo_and_clear_remove_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.journal");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(&entry(1)).unwrap();
        let before = journal.len();
        journal.append(&entry(2)).unwrap();
        journal.undo_last(before).unwrap();
        journal.append(&entry(3)).unwrap();
        drop(journal);
        let (mut journal, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries, vec![expected(1), expected(3)]);
        journal.clear();
        journal.append(&entry(4)).unwrap();
        drop(journal);
        let (_, entries) = Journal::open(&path).unwrap();
        assert_eq!(entries, vec![expected(4)]);
    }

    #[test]
    fn a_count_larger_than_the_payload_is_a_broken_entry_not_an_allocation() {
        let mut payload = 1u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&1u16.to_le_bytes());
        payload.push(b'w');
        payload.push(0);
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_entry(&payload), None);
    }
}
