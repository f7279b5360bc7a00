//! CSV (RFC 4180): a header row naming the fields, then one record a row. Read with the options
//! of [`options`] (delimiter, null spelling); written with commas, CRLF line ends, and an empty
//! field for null.

mod decode;
mod encode;
pub(crate) mod options;

use crate::table::Format;

pub(crate) static FORMAT: Format = Format {
    name: "csv",
    media_types: &["text/csv"],
    extensions: &["csv"],
    decode: Some(decode::decode),
    encode: Some(encode::encode),
    read_options: options::OPTIONS,
};
