//! Text encodings of answer rows, column by column: each column is downcast once per batch and its
//! cells are written straight into the output buffer, in the notation the API accepts (RFC 3339
//! timestamps, dates as YYYY-MM-DD, json fields inline in JSON and as their text in CSV).

use arrow_array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use dataforge_domain::query::OutputColumn;
use dataforge_domain::value::{FieldType, format_date, format_timestamp};

/// One column of a batch, downcast to its field type's array.
enum Cells<'a> {
    Text(&'a StringArray),
    Json(&'a StringArray),
    Integer(&'a Int64Array),
    Float(&'a Float64Array),
    Boolean(&'a BooleanArray),
    Date(&'a Date32Array),
    Timestamp(&'a TimestampMicrosecondArray),
    /// A column whose array is not of its field's type (never made by storage): all null.
    Missing,
}

impl<'a> Cells<'a> {
    fn of(ty: FieldType, array: &'a dyn Array) -> Self {
        let any = array.as_any();
        let cells = match ty {
            FieldType::String => any.downcast_ref().map(Cells::Text),
            FieldType::Json => any.downcast_ref().map(Cells::Json),
            FieldType::Integer => any.downcast_ref().map(Cells::Integer),
            FieldType::Float => any.downcast_ref().map(Cells::Float),
            FieldType::Boolean => any.downcast_ref().map(Cells::Boolean),
            FieldType::Date => any.downcast_ref().map(Cells::Date),
            FieldType::Timestamp => any.downcast_ref().map(Cells::Timestamp),
        };
        cells.unwrap_or(Cells::Missing)
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Cells::Text(a) | Cells::Json(a) => a.is_null(row),
            Cells::Integer(a) => a.is_null(row),
            Cells::Float(a) => a.is_null(row),
            Cells::Boolean(a) => a.is_null(row),
            Cells::Date(a) => a.is_null(row),
            Cells::Timestamp(a) => a.is_null(row),
            Cells::Missing => true,
        }
    }

    /// Writes a non-null cell as text: what a CSV field holds, and (quoted where needed) JSON.
    fn write_text(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            Cells::Text(a) | Cells::Json(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Cells::Integer(a) => {
                out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Cells::Float(a) => {
                // the shortest round-trip notation (ryu), as serde_json writes floats (NaN and
                // infinities, which only Arrow or Parquet input can carry, as `NaN`, `inf`)
                out.extend_from_slice(ryu::Buffer::new().format(a.value(row)).as_bytes())
            }
            Cells::Boolean(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Cells::Date(a) => write_date(a.value(row), out),
            Cells::Timestamp(a) => write_timestamp(a.value(row), out),
            Cells::Missing => {}
        }
    }

    fn write_json(&self, row: usize, out: &mut Vec<u8>) {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return;
        }
        match self {
            // stored json fields were checked to be JSON when written
            Cells::Json(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Cells::Text(a) => {
                let _ = serde_json::to_writer(&mut *out, a.value(row));
            }
            // JSON has no NaN or infinity; serde_json writes them as null too
            Cells::Float(a) if !a.value(row).is_finite() => out.extend_from_slice(b"null"),
            Cells::Date(_) | Cells::Timestamp(_) => {
                out.push(b'"');
                self.write_text(row, out);
                out.push(b'"');
            }
            other => other.write_text(row, out),
        }
    }
}

/// The civil date of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `n` as `width` zero-padded digits.
fn digits(mut n: u32, width: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `YYYY-MM-DD`, the same text as [`format_date`] without its allocation; other years go through it.
fn write_date(days: i32, out: &mut Vec<u8>) {
    let (year, month, day) = civil(i64::from(days));
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(format_date(days).as_bytes());
        return;
    }
    digits(year as u32, 4, out);
    out.push(b'-');
    digits(month, 2, out);
    out.push(b'-');
    digits(day, 2, out);
}

/// RFC 3339 in UTC with as many fraction digits as needed (none, 3 or 6), the same text as
/// [`format_timestamp`] without its allocation.
fn write_timestamp(micros: i64, out: &mut Vec<u8>) {
    let days = micros.div_euclid(86_400_000_000);
    let (year, _, _) = civil(days);
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(format_timestamp(micros).as_bytes());
        return;
    }
    write_date(days as i32, out);
    let of_day = micros.rem_euclid(86_400_000_000);
    let seconds = (of_day / 1_000_000) as u32;
    out.push(b'T');
    digits(seconds / 3600, 2, out);
    out.push(b':');
    digits(seconds / 60 % 60, 2, out);
    out.push(b':');
    digits(seconds % 60, 2, out);
    let fraction = (of_day % 1_000_000) as u32;
    if fraction != 0 {
        out.push(b'.');
        if fraction.is_multiple_of(1000) {
            digits(fraction / 1000, 3, out);
        } else {
            digits(fraction, 6, out);
        }
    }
    out.push(b'Z');
}

/// Writes rows of one batch as JSON objects.
pub struct JsonRows<'a> {
    /// `"name":` for each column, already escaped.
    keys: Vec<Vec<u8>>,
    cells: Vec<Cells<'a>>,
}

impl<'a> JsonRows<'a> {
    pub fn new(columns: &[OutputColumn], batch: &'a RecordBatch) -> Self {
        let keys = columns
            .iter()
            .map(|c| {
                let mut key = serde_json::to_vec(&c.name).unwrap_or_default();
                key.push(b':');
                key
            })
            .collect();
        JsonRows {
            keys,
            cells: cells(columns, batch),
        }
    }

    pub fn write(&self, row: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (key, cells)) in self.keys.iter().zip(&self.cells).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            cells.write_json(row, out);
        }
        out.push(b'}');
    }
}

fn cells<'a>(columns: &[OutputColumn], batch: &'a RecordBatch) -> Vec<Cells<'a>> {
    columns
        .iter()
        .zip(batch.columns())
        .map(|(c, array)| Cells::of(c.field_type, array.as_ref()))
        .collect()
}

/// Writes the header line of a CSV answer.
pub(crate) fn csv_header(columns: &[OutputColumn], out: &mut Vec<u8>) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(column.name.as_bytes(), out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes every row of a batch as CSV lines (RFC 4180: CRLF, fields quoted when they hold a
/// comma, quote or line break; null is an empty field).
pub(crate) fn csv_rows(columns: &[OutputColumn], batch: &RecordBatch, out: &mut Vec<u8>) {
    let cells = cells(columns, batch);
    let mut text = Vec::with_capacity(64);
    for row in 0..batch.num_rows() {
        for (i, cells) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if cells.is_null(row) {
                continue;
            }
            text.clear();
            cells.write_text(row, &mut text);
            csv_field(&text, out);
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn csv_field(text: &[u8], out: &mut Vec<u8>) {
    // an empty string is quoted, for readers that tell it from null (an empty field)
    let quote = text.is_empty()
        || text
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !quote {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_read_as_the_domain_writes_them() {
        let mut day = -800_000i64;
        while day < 3_000_000 {
            let mut out = Vec::new();
            write_date(day as i32, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format_date(day as i32));
            day += 997;
        }
        for micros in [
            0i64,
            1,
            999,
            1_000,
            123_456_789,
            1_600_000_000_000_000,
            1_600_000_000_123_000,
            1_600_000_000_000_001,
            -1,
            -86_400_000_000,
            -62_135_596_800_000_000,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
        ] {
            let mut out = Vec::new();
            write_timestamp(micros, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format_timestamp(micros),
                "{micros}"
            );
        }
    }
}
