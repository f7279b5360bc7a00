//! `dataforge generate`: deterministic synthetic `well_production` rows for benchmarks and demos,
//! written as a stream (batch by batch) so any row count needs the same memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use dataforge_domain::query::OutputColumn;
use dataforge_domain::schema::DatasetSchema;
use dataforge_formats::AnswerColumns;
use dataforge_formats::table::{self, Format};

/// Rows per generated batch.
const BATCH: u64 = 64 * 1024;

/// Months in the generated history, from 1947-01.
const MONTHS: u64 = 924;

/// One generated row.
struct Row {
    field_code: i64,
    well_code: i64,
    period: i64,
    days: i64,
    oil: f64,
    gas: f64,
    liquids: f64,
    water: f64,
    partition: u64,
}

/// A reproducible pseudo-random number in [0, 1) from `i` and a stream number (SplitMix64).
fn unit(i: u64, stream: u64) -> f64 {
    let mut z = i
        .wrapping_mul(4)
        .wrapping_add(stream)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Microseconds since the epoch of the first day of month `m` counted from 1947-01-01.
fn month_start(m: u64) -> i64 {
    let year = 1947 + (m / 12) as i32;
    let month = (m % 12) as u32 + 1;
    chrono::NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or_default()
}

fn row(i: u64) -> Row {
    let well_code = 100_000 + (i / MONTHS) as i64;
    Row {
        field_code: 1 + (well_code * 7919) % 2000,
        well_code,
        period: month_start(i % MONTHS),
        days: 1 + ((i * 7) % 31) as i64,
        oil: unit(i, 0) * 10.0,
        gas: unit(i, 1) * 100.0,
        liquids: unit(i, 2) * 5.0,
        water: unit(i, 3) * 20.0,
        partition: i % 10,
    }
}

/// `--format` of `generate`: a format of the table that can be written.
pub fn writable(name: &str) -> Result<&'static Format, String> {
    table::encodable()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("formats written: {}", table::names(table::encodable())))
}

/// Writes generated rows `start..start + rows` of `dataset` (which must be `well_production`) to
/// `out` in `format`, with that format's encoder from the formats table (the same as an export's);
/// several files with consecutive ranges hold distinct keys.
pub fn generate(
    dataset: &DatasetSchema,
    start: u64,
    rows: u64,
    format: &Format,
    out: &Path,
) -> Result<(), String> {
    if dataset.name != "well_production" {
        return Err(format!(
            "there is no generator for dataset `{}`; only well_production has one",
            dataset.name
        ));
    }
    let Some(encode) = format.encode else {
        return Err(format!("cannot write {} files", format.name));
    };
    let file = File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let schema = Arc::clone(dataset.arrow_schema());
    let columns: Arc<[OutputColumn]> = dataset
        .fields
        .iter()
        .map(|f| OutputColumn {
            name: f.name.clone(),
            field_type: f.field_type,
        })
        .collect();
    let columns = AnswerColumns::new(columns, Some(dataset));
    let mut batches = batches(&schema, start, start + rows).map(|b| b.map_err(|e| e.to_string()));
    encode(&columns, &mut batches, &mut out).map_err(|e| format!("writing failed: {e}"))?;
    out.flush().map_err(|e| format!("writing failed: {e}"))
}

/// Rows `first..end` as Arrow batches of [`BATCH`] rows, built column by column.
fn batches(
    schema: &SchemaRef,
    first: u64,
    end: u64,
) -> impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>> + '_ {
    (first..end).step_by(BATCH as usize).map(move |start| {
        let end = (start + BATCH).min(end);
        let n = (end - start) as usize;
        let ints = || Int64Builder::with_capacity(n);
        let (mut field_code, mut well_code, mut days) = (ints(), ints(), ints());
        let floats = || Float64Builder::with_capacity(n);
        let (mut oil, mut gas, mut liquids, mut water) = (floats(), floats(), floats(), floats());
        let strings = || StringBuilder::with_capacity(n, n * 12);
        let (
            mut field_name,
            mut reference,
            mut well_name,
            mut source,
            mut source_data,
            mut partition,
        ) = (
            strings(),
            strings(),
            strings(),
            strings(),
            strings(),
            strings(),
        );
        let mut period = TimestampMicrosecondBuilder::with_capacity(n);
        for i in start..end {
            let r = row(i);
            field_code.append_value(r.field_code);
            field_name.append_value(format!("FIELD-{}", r.field_code));
            well_code.append_value(r.well_code);
            reference.append_value(format!("REF-{}", r.well_code));
            well_name.append_value(format!("WELL-{}", r.well_code));
            period.append_value(r.period);
            days.append_value(r.days);
            oil.append_value(r.oil);
            gas.append_value(r.gas);
            liquids.append_value(r.liquids);
            water.append_value(r.water);
            source.append_value("ANP");
            source_data.append_value("{\"src\":\"anp\"}");
            partition.append_value(format!("p{}", r.partition));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(field_code.finish()),
            Arc::new(field_name.finish()),
            Arc::new(well_code.finish()),
            Arc::new(reference.finish()),
            Arc::new(well_name.finish()),
            Arc::new(period.finish()),
            Arc::new(days.finish()),
            Arc::new(oil.finish()),
            Arc::new(gas.finish()),
            Arc::new(liquids.finish()),
            Arc::new(water.finish()),
            Arc::new(source.finish()),
            Arc::new(source_data.finish()),
            Arc::new(partition.finish()),
        ];
        RecordBatch::try_new(Arc::clone(schema), columns)
    })
}

#[cfg(test)]
mod tests {
    use dataforge_domain::value::format_timestamp;

    use super::*;

    #[test]
    fn rows_follow_the_documented_rules() {
        let r = row(925);
        assert_eq!(r.well_code, 100_001);
        assert_eq!(r.field_code, 1 + (100_001 * 7919) % 2000);
        assert_eq!(format_timestamp(r.period), "1947-02-01T00:00:00Z");
        assert_eq!(r.days, 1 + (925 * 7) % 31);
        assert_eq!(format_timestamp(row(923).period), "2023-12-01T00:00:00Z");
        assert_eq!(r.partition, 5);
        for i in 0..1000 {
            let r = row(i);
            assert!((0.0..10.0).contains(&r.oil) && (0.0..100.0).contains(&r.gas));
            assert!((0.0..5.0).contains(&r.liquids) && (0.0..20.0).contains(&r.water));
        }
        assert_eq!(
            row(42).oil.to_bits(),
            row(42).oil.to_bits(),
            "deterministic"
        );
        assert_ne!(row(42).oil.to_bits(), row(43).oil.to_bits());
    }
}
