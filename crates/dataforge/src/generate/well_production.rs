//! The documented `well_production` generator (benchmarks and docs/benchmarks.md depend on its
//! rules): well codes from 100,000, 924 monthly periods from 1947-01 per well, rates from SplitMix.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;

use super::synthetic::unit;

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

/// Rows `first..end` as Arrow batches of [`super::BATCH`] rows, built column by column.
pub(super) fn batches(
    schema: SchemaRef,
    first: u64,
    end: u64,
) -> impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>> {
    (first..end)
        .step_by(super::BATCH as usize)
        .map(move |start| {
            let end = (start + super::BATCH).min(end);
            let n = (end - start) as usize;
            let ints = || Int64Builder::with_capacity(n);
            let (mut field_code, mut well_code, mut days) = (ints(), ints(), ints());
            let floats = || Float64Builder::with_capacity(n);
            let (mut oil, mut gas, mut liquids, mut water) =
                (floats(), floats(), floats(), floats());
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
            RecordBatch::try_new(Arc::clone(&schema), columns)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataforge_domain::value::format_timestamp;

    #[test]
    fn batches_hold_the_rows_of_their_range() {
        let schema = well_production_schema();
        let batch = batches(schema, 40, 44).next().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 4);
        let oil = batch
            .column(7)
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap();
        let wells = batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        for (n, i) in (40..44).enumerate() {
            assert_eq!(oil.value(n).to_bits(), row(i).oil.to_bits(), "row {i}");
            assert_eq!(wells.value(n), row(i).well_code, "row {i}");
        }
    }

    fn well_production_schema() -> SchemaRef {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = dataforge_schema_toml::load_catalog(&shipped).unwrap();
        Arc::clone(catalog.get("well_production").unwrap().arrow_schema())
    }

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
        assert_ne!(row(42).oil.to_bits(), row(43).oil.to_bits());
    }
}
