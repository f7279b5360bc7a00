//! What a Parquet file may declare before it is decoded. A few kilobytes of Parquet can declare
//! gigabytes: a column chunk's uncompressed size in the footer, and each page's in its header,
//! which the parquet crate trusts when it allocates the page's buffer. Both are checked against
//! [`MAX_CHUNK_BYTES`] (the bound of an Arrow message's body) first, reading only the headers.

use std::io::{BufReader, Read, Seek, SeekFrom};

use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use thrift::protocol::TCompactInputProtocol;

/// Largest column chunk (and so page), uncompressed, that is decoded.
pub(crate) const MAX_CHUNK_BYTES: i64 = 256 * 1024 * 1024;

/// Largest byte string (statistics, say) a page header may hold.
const MAX_HEADER_STRING: usize = 1024 * 1024;

/// Why a file is refused before decoding, if it is: a column chunk declaring more than `limit`
/// bytes uncompressed, or a page declaring more than its chunk.
pub(crate) fn refusal<F: Read + Seek>(
    metadata: &ParquetMetaData,
    file: &mut F,
    limit: i64,
) -> Option<String> {
    let chunks = metadata
        .row_groups()
        .iter()
        .enumerate()
        .flat_map(|(group, row_group)| row_group.columns().iter().map(move |c| (group, c)));
    for (group, column) in chunks {
        let name = column.column_path().string();
        if !(0..=limit).contains(&column.uncompressed_size()) {
            return Some(format!(
                "column `{name}` of row group {group} declares {} bytes uncompressed, more than the {limit} a column chunk may hold; write the file with smaller row groups",
                column.uncompressed_size()
            ));
        }
        if let Err(why) = check_pages(column, file) {
            return Some(format!("column `{name}` of row group {group}: {why}"));
        }
    }
    None
}

/// Why a file's footer (its metadata) is refused before the parquet crate reads it, if it is: the
/// crate allocates each list for the count the footer declares (a few bytes can declare billions
/// of schema elements, tens of GiB, which aborts the process), so the footer is read first with
/// every list, string and the whole message bounded by the footer's own length.
pub(crate) fn footer_refusal<F: Read + Seek>(file: &mut F) -> Option<String> {
    let length = file.seek(SeekFrom::End(0)).ok()?;
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(length.checked_sub(8)?)).ok()?;
    file.read_exact(&mut tail).ok()?;
    if &tail[4..] != b"PAR1" {
        return None; // not a plain Parquet file: the parquet crate says what it is
    }
    let declared = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let start = length.checked_sub(8)?.checked_sub(declared)?;
    let mut footer = vec![0u8; usize::try_from(declared).ok()?];
    file.seek(SeekFrom::Start(start)).ok()?;
    file.read_exact(&mut footer).ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    file_metadata(&footer).err()
}

/// Reads a footer with every size bounded by its length.
#[allow(deprecated)]
fn file_metadata(footer: &[u8]) -> Result<(), String> {
    use parquet::thrift::TSerializable;
    let bound = Some(footer.len());
    let config = thrift::TConfiguration::builder()
        .max_message_size(bound)
        .max_frame_size(bound)
        .max_container_size(bound)
        .max_string_size(bound)
        .build()
        .map_err(|e| e.to_string())?;
    let mut protocol = TCompactInputProtocol::with_config(footer, config);
    parquet::format::FileMetaData::read_from_in_protocol(&mut protocol)
        .map(|_| ())
        .map_err(|e| format!("the file's metadata is unreadable: {e}"))
}

/// Walks the page headers of one column chunk: each page's uncompressed size is within the
/// chunk's, and its compressed bytes within the chunk's range.
fn check_pages<F: Read + Seek>(column: &ColumnChunkMetaData, file: &mut F) -> Result<(), String> {
    // the parquet crate's `byte_range` asserts (panics) where a file declares a negative range
    let start = column
        .dictionary_page_offset()
        .unwrap_or(column.data_page_offset());
    let (Ok(start), Ok(length)) = (
        u64::try_from(start),
        u64::try_from(column.compressed_size()),
    ) else {
        return Err("the column chunk declares a negative offset or size".into());
    };
    let end = start.saturating_add(length);
    let mut at = start;
    while at < end {
        file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        let mut counted = Counted {
            inner: BufReader::with_capacity(1024, &mut *file),
            read: 0,
        };
        let (uncompressed, compressed) = page_sizes(&mut counted)?;
        if uncompressed < 0 || i64::from(uncompressed) > column.uncompressed_size() {
            return Err(format!(
                "a page declares {uncompressed} bytes uncompressed, more than its column chunk's {}",
                column.uncompressed_size()
            ));
        }
        let next = u64::try_from(compressed)
            .ok()
            .map(|size| at + counted.read + size)
            .filter(|next| *next <= end)
            .ok_or("a page declares more compressed bytes than its column chunk holds")?;
        at = next;
    }
    Ok(())
}

// the parquet crate keeps its own page-header reader private; its generated (deprecated) thrift
// types are the public way to read one
/// A page header's uncompressed and compressed sizes.
#[allow(deprecated)]
fn page_sizes(input: impl Read) -> Result<(i32, i32), String> {
    use parquet::thrift::TSerializable;
    let config = thrift::TConfiguration::builder()
        .max_string_size(Some(MAX_HEADER_STRING))
        .max_container_size(Some(MAX_HEADER_STRING))
        .build()
        .map_err(|e| e.to_string())?;
    let mut protocol = TCompactInputProtocol::with_config(input, config);
    parquet::format::PageHeader::read_from_in_protocol(&mut protocol)
        .map(|header| (header.uncompressed_page_size, header.compressed_page_size))
        .map_err(|e| format!("a page header is unreadable: {e}"))
}

/// A reader that counts what was taken from it (a header's length).
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// A one-column Parquet file of `rows` strings in several pages, with its metadata.
    fn written(rows: usize) -> (File, ParquetMetaData) {
        let values: Vec<String> = (0..rows).map(|i| format!("{i:0>100}")).collect();
        let column: ArrayRef = Arc::new(StringArray::from(values));
        let batch = RecordBatch::try_from_iter([("name", column)]).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        let properties = WriterProperties::builder()
            .set_data_page_size_limit(64 * 1024)
            .build();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let metadata = SerializedFileReader::new(file.try_clone().unwrap())
            .unwrap()
            .metadata()
            .clone();
        (file, metadata)
    }

    #[test]
    fn a_well_formed_file_passes_every_page() {
        let (mut file, metadata) = written(10_000);
        assert!(refusal(&metadata, &mut file, MAX_CHUNK_BYTES).is_none());
    }

    #[test]
    fn chunks_declaring_more_than_the_bound_are_refused_before_decoding() {
        let (mut file, metadata) = written(10_000);
        let declared = metadata.row_group(0).column(0).uncompressed_size();
        assert!(refusal(&metadata, &mut file, declared).is_none());
        let refused = refusal(&metadata, &mut file, declared - 1).expect("refused");
        assert!(
            refused.contains("column `name` of row group 0 declares"),
            "{refused}"
        );
    }

    #[test]
    fn pages_declaring_more_than_their_chunk_are_refused() {
        let (mut file, metadata) = written(10_000);
        let chunk = metadata.row_group(0).column(0).clone();
        // a chunk smaller than its pages say they are: the pages' sizes are the lie here
        let small = chunk
            .clone()
            .into_builder()
            .set_total_uncompressed_size(1024)
            .build()
            .unwrap();
        let refused = check_pages(&small, &mut file).unwrap_err();
        assert!(
            refused.contains("bytes uncompressed, more than its column chunk's 1024"),
            "{refused}"
        );
        let short = chunk
            .into_builder()
            .set_total_compressed_size(metadata.row_group(0).column(0).compressed_size() - 1)
            .build()
            .unwrap();
        let refused = check_pages(&short, &mut file).unwrap_err();
        assert!(
            refused.contains("more compressed bytes than its column chunk holds"),
            "{refused}"
        );
    }

    #[test]
    fn a_footer_is_read_within_its_own_length() {
        let (mut file, _) = written(100);
        assert_eq!(
            footer_refusal(&mut file),
            None,
            "a well-formed footer passes"
        );
        // a footer declaring a list of 2^31 - 1 schema elements in a few bytes (found by fuzzing:
        // the parquet crate asked for 22 GB)
        let hostile = include_bytes!("../../../../dataforge/tests/data/parquet-huge-list.parquet");
        let refused = footer_refusal(&mut std::io::Cursor::new(hostile.to_vec())).expect("refused");
        assert!(refused.contains("metadata is unreadable"), "{refused}");
    }

    #[test]
    fn a_chunk_declaring_a_negative_range_is_refused_not_a_panic() {
        let (mut file, metadata) = written(100);
        let negative = metadata
            .row_group(0)
            .column(0)
            .clone()
            .into_builder()
            .set_data_page_offset(-4)
            .set_dictionary_page_offset(None)
            .build()
            .unwrap();
        let refused = check_pages(&negative, &mut file).unwrap_err();
        assert!(refused.contains("negative offset"), "{refused}");
    }

    #[test]
    fn a_garbage_page_header_is_refused_without_allocating_what_it_declares() {
        let (_, metadata) = written(100);
        let chunk = metadata.row_group(0).column(0);
        let (start, length) = chunk.byte_range();
        // an unknown field 15 of binary type declaring 1 GiB (varint), where a page header should be
        let mut bytes = vec![0u8; start as usize];
        bytes.extend([0xF8, 0x80, 0x80, 0x80, 0x80, 0x04]);
        bytes.resize((start + length) as usize, 0);
        let refused = check_pages(chunk, &mut std::io::Cursor::new(bytes)).unwrap_err();
        assert!(refused.contains("a page header is unreadable"), "{refused}");
    }
}
