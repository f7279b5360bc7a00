//! The one table of formats: what each is called, its media types and file extensions, whether it
//! can be read and written, and the options it reads. HTTP content negotiation, the 415 and 406
//! answers, the API description, `import` and `generate` all read this table, so adding a format is
//! adding its file and a row here.

use std::io::{Read, Write};

use arrow_array::RecordBatch;
use dataforge_domain::records::{BodyError, BodyFormat, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;

use crate::answer::{AnswerColumns, EncodeError};

/// Reads a body into schema-shaped batches of at most `batch_rows` records, handing each to the sink.
pub type Decode = fn(
    schema: &DatasetSchema,
    options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError>;

/// Writes every batch of an answer to `out`, in pieces as it goes (a streamed answer is sent as it
/// is written, so an encoder never holds more than a batch).
pub type Encode = fn(
    columns: &AnswerColumns,
    batches: &mut dyn Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (dyn Write + Send),
) -> Result<(), EncodeError>;

/// One row of the table.
#[derive(Debug)]
pub struct Format {
    /// The name used by `?format=`, `--format` and metrics.
    pub name: &'static str,
    /// Media types naming it; the first is the one answered with.
    pub media_types: &'static [&'static str],
    /// File extensions naming it (lower case, no dot).
    pub extensions: &'static [&'static str],
    pub decode: Option<Decode>,
    pub encode: Option<Encode>,
    /// The read options it takes (query parameters of a write, options of `import`).
    pub read_options: &'static [ReadOption],
}

/// An option of how a body is read (`delimiter=;`).
#[derive(Debug)]
pub struct ReadOption {
    pub name: &'static str,
    /// What it does and the values it takes, for the API description and `--help`.
    pub description: &'static str,
    /// The values it takes, when they are few (for the API description).
    pub values: &'static [&'static str],
    /// Checks a value and sets it in the options; `Err` says what is wrong with it.
    pub apply: fn(&str, &mut ReadOptions) -> Result<(), String>,
}

/// A read option that is unknown, repeated or of a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ReadOptionError {
    pub parameter: String,
    pub message: String,
}

/// The read options of a body in `format`, from `name=value` pairs, every one checked.
pub fn read_options(
    format: &Format,
    pairs: &[(String, String)],
) -> Result<ReadOptions, ReadOptionError> {
    let mut options = ReadOptions::default();
    for (at, (name, value)) in pairs.iter().enumerate() {
        let refused = |message: String| ReadOptionError {
            parameter: name.clone(),
            message,
        };
        if pairs[..at].iter().any(|(n, _)| n == name) {
            return Err(refused("given more than once".to_owned()));
        }
        let Some(option) = format.read_options.iter().find(|o| o.name == name) else {
            return Err(refused(unknown_option(format, name)));
        };
        (option.apply)(value, &mut options).map_err(refused)?;
    }
    Ok(options)
}

fn unknown_option(format: &Format, name: &str) -> String {
    let takers: Vec<&str> = FORMATS
        .iter()
        .filter(|f| f.read_options.iter().any(|o| o.name == name))
        .map(|f| f.name)
        .collect();
    if takers.is_empty() {
        format!("`{name}` is not an option of a {} body", format.name)
    } else {
        format!(
            "`{name}` applies to {} bodies only, and this one is {}",
            takers.join(", "),
            format.name
        )
    }
}

/// Whether some format reads an option of this name (a write's query parameter that is not the
/// write's own).
pub fn is_read_option(name: &str) -> bool {
    FORMATS
        .iter()
        .any(|f| f.read_options.iter().any(|o| o.name == name))
}

impl Format {
    /// The domain's name for it.
    pub fn id(&self) -> BodyFormat {
        BodyFormat::named(self.name)
    }

    /// The media type an answer in this format is sent as.
    pub fn media_type(&self) -> &'static str {
        self.media_types
            .first()
            .copied()
            .unwrap_or("application/octet-stream")
    }

    pub fn can_decode(&self) -> bool {
        self.decode.is_some()
    }

    pub fn can_encode(&self) -> bool {
        self.encode.is_some()
    }
}

/// Every format, in the order of preference when a client accepts several equally (JSON first,
/// so `*/*` gets JSON; CSV the first text type, so `text/*` gets CSV).
pub static FORMATS: &[&Format] = &[
    &crate::json::FORMAT,
    &crate::ndjson::FORMAT,
    &crate::csv::FORMAT,
    &crate::arrow::FORMAT,
    &crate::parquet::FORMAT,
];

/// The format of this name.
pub fn by_name(name: &str) -> Option<&'static Format> {
    FORMATS.iter().copied().find(|f| f.name == name)
}

/// The format of a domain format name.
pub fn of(format: BodyFormat) -> Option<&'static Format> {
    by_name(format.name())
}

/// The format a media type names (its essence, any case; parameters ignored).
pub fn by_media_type(media_type: &str) -> Option<&'static Format> {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    FORMATS.iter().copied().find(|f| {
        f.media_types
            .iter()
            .any(|m| m.eq_ignore_ascii_case(essence))
    })
}

/// The format a file's extension names (any case).
pub fn by_extension(extension: &str) -> Option<&'static Format> {
    FORMATS.iter().copied().find(|f| {
        f.extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension))
    })
}

/// The formats that can be read.
pub fn decodable() -> impl Iterator<Item = &'static Format> {
    FORMATS.iter().copied().filter(|f| f.can_decode())
}

/// The formats that can be written.
pub fn encodable() -> impl Iterator<Item = &'static Format> {
    FORMATS.iter().copied().filter(|f| f.can_encode())
}

/// The names of formats, comma-separated, for messages.
pub fn names(formats: impl Iterator<Item = &'static Format>) -> String {
    formats.map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// The media types of formats, in table order, for messages and the API description.
pub fn media_types(formats: impl Iterator<Item = &'static Format>) -> Vec<&'static str> {
    formats
        .flat_map(|f| f.media_types.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_found_by_each_of_its_names() {
        for format in FORMATS {
            assert!(std::ptr::eq(by_name(format.name).unwrap(), *format));
            assert_eq!(of(format.id()).unwrap().name, format.name);
            for media in format.media_types {
                assert_eq!(by_media_type(media).unwrap().name, format.name, "{media}");
            }
            for extension in format.extensions {
                assert_eq!(by_extension(extension).unwrap().name, format.name);
            }
        }
    }

    #[test]
    fn names_media_types_and_extensions_are_unique() {
        let mut seen = Vec::new();
        for format in FORMATS {
            let keys = std::iter::once(format!("name {}", format.name))
                .chain(format.media_types.iter().map(|m| format!("media {m}")))
                .chain(format.extensions.iter().map(|e| format!("extension {e}")));
            for key in keys {
                assert!(!seen.contains(&key), "{key} twice");
                seen.push(key);
            }
        }
    }

    #[test]
    fn lookups_ignore_case_and_parameters() {
        assert_eq!(
            by_media_type("Text/CSV; charset=utf-8").unwrap().name,
            "csv"
        );
        assert_eq!(by_extension("JSONL").unwrap().name, "ndjson");
        assert_eq!(by_extension("arrows").unwrap().name, "arrow");
        assert!(by_media_type("text/plain").is_none());
        assert!(by_name("xml").is_none());
    }

    #[test]
    fn the_table_says_what_each_format_does() {
        let row = |name| {
            let f = by_name(name).unwrap();
            let options: Vec<&str> = f.read_options.iter().map(|o| o.name).collect();
            (f.media_type(), f.can_decode(), f.can_encode(), options)
        };
        assert_eq!(row("json"), ("application/json", true, true, vec![]));
        assert_eq!(row("ndjson"), ("application/x-ndjson", true, true, vec![]));
        assert_eq!(
            row("csv"),
            ("text/csv", true, true, vec!["delimiter", "null"])
        );
        assert_eq!(
            row("arrow"),
            ("application/vnd.apache.arrow.stream", true, true, vec![])
        );
        assert_eq!(
            row("parquet"),
            ("application/vnd.apache.parquet", true, true, vec![])
        );
        assert_eq!(names(decodable()), "json, ndjson, csv, arrow, parquet");
        assert_eq!(media_types(encodable()).len(), 6);
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    #[test]
    fn an_option_of_another_format_says_which_takes_it() {
        let pairs = [("delimiter".to_owned(), ";".to_owned())];
        let e = read_options(by_name("json").unwrap(), &pairs).unwrap_err();
        assert_eq!(e.parameter, "delimiter");
        assert!(
            e.message.contains("applies to csv bodies only"),
            "{}",
            e.message
        );
        assert!(is_read_option("null") && !is_read_option("on_conflict"));
    }
}
