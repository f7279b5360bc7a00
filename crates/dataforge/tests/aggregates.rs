//! Aggregates over real HTTP against answers the test computes itself from the rows it wrote:
//! every bucket unit and multiples, the count_distinct, median, percentile and stddev metrics,
//! `having` in both forms, the group limit of JSON answers, and the 400s of misapplied parts.

mod support;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Value, json};
use support::Server;

const WP: &str = "/v1/datasets/well_production";
/// DuckDB's `time_bucket` origin for buckets of minutes to weeks: Monday 2000-01-03.
const ORIGIN_2000_01_03: i64 = 946_857_600;

/// One written row, as the test keeps it to compute answers from.
#[derive(Debug, Clone)]
struct Row {
    field: i64,
    well_name: String,
    at: DateTime<Utc>,
    oil: Option<f64>,
    days: i64,
}

/// Rows dense in minutes around a midnight, rows spread over thirty years, and one field with a
/// single row (whose sample stddev is null).
fn rows() -> Vec<Row> {
    let dense = DateTime::from_timestamp(1_614_636_000, 0).unwrap(); // 2021-03-01T22:00:00Z
    (0..81)
        .map(|i: i64| {
            let at = if i < 40 {
                dense + chrono::Duration::seconds(i * 419)
            } else {
                let j = i - 40;
                NaiveDate::from_ymd_opt(
                    1996 + (j * 7 % 30) as i32,
                    1 + (j * 5 % 12) as u32,
                    1 + (j * 11 % 28) as u32,
                )
                .unwrap()
                .and_hms_opt((j % 24) as u32, (j * 13 % 60) as u32, (j % 60) as u32)
                .unwrap()
                .and_utc()
            };
            Row {
                field: if i == 80 { 9 } else { 1 + i % 4 },
                well_name: format!("W{}", i % 9),
                at,
                // quarters sum exactly in floating point
                oil: (i % 11 != 0).then(|| (i * 37 % 50) as f64 * 0.25),
                days: i % 31,
            }
        })
        .collect()
}

fn record(i: usize, row: &Row) -> Value {
    let mut r = support::production(i as i64);
    r["field_code"] = json!(row.field);
    r["well_code"] = json!(i);
    r["well_name"] = json!(row.well_name);
    r["production_period"] = json!(stamp(row.at));
    r["oil_production_kbd"] = json!(row.oil);
    r["days_on_production"] = json!(row.days);
    r
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn loaded(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("db.duckdb"),
        &support::shipped_schemas(),
        env,
    );
    let rows = rows();
    let records: Vec<Value> = rows.iter().enumerate().map(|(i, r)| record(i, r)).collect();
    let written = server.post_json(&format!("{WP}/records"), &json!(records));
    assert_eq!(written.status, 201, "{written:?}");
    (dir, server, rows)
}

fn items(answer: &support::Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"].as_array().unwrap().clone()
}

fn aggregate(server: &Server, query: &str) -> support::Answer {
    server.get(&format!("{WP}/aggregate?{query}"))
}

/// The start of the `width`-second bucket holding `at`, counted from `origin`.
fn seconds_bucket(at: DateTime<Utc>, origin: i64, width: i64) -> DateTime<Utc> {
    let start = origin + (at.timestamp() - origin).div_euclid(width) * width;
    DateTime::from_timestamp(start, 0).unwrap()
}

/// The start of the `n`-month bucket holding `at`, counted from January 2000.
fn months_bucket(at: DateTime<Utc>, n: i32) -> DateTime<Utc> {
    let months = (at.year() - 2000) * 12 + at.month0() as i32;
    let start = months.div_euclid(n) * n;
    NaiveDate::from_ymd_opt(
        2000 + start.div_euclid(12),
        start.rem_euclid(12) as u32 + 1,
        1,
    )
    .unwrap()
    .and_hms_opt(0, 0, 0)
    .unwrap()
    .and_utc()
}

#[test]
fn every_bucket_unit_and_multiple_groups_as_computed() {
    let (_dir, server, rows) = loaded(&[]);
    type Start = fn(DateTime<Utc>) -> DateTime<Utc>;
    let units: [(&str, Start); 16] = [
        ("minute", |t| seconds_bucket(t, 0, 60)),
        ("15minute", |t| seconds_bucket(t, ORIGIN_2000_01_03, 900)),
        ("7minute", |t| seconds_bucket(t, ORIGIN_2000_01_03, 420)),
        ("hour", |t| seconds_bucket(t, 0, 3600)),
        ("6hour", |t| seconds_bucket(t, ORIGIN_2000_01_03, 6 * 3600)),
        ("day", |t| seconds_bucket(t, 0, 86_400)),
        ("2day", |t| seconds_bucket(t, ORIGIN_2000_01_03, 2 * 86_400)),
        ("week", |t| seconds_bucket(t, ORIGIN_2000_01_03, 7 * 86_400)),
        ("2week", |t| {
            seconds_bucket(t, ORIGIN_2000_01_03, 14 * 86_400)
        }),
        ("month", |t| months_bucket(t, 1)),
        ("5month", |t| months_bucket(t, 5)),
        ("quarter", |t| months_bucket(t, 3)),
        ("2quarter", |t| months_bucket(t, 6)),
        ("year", |t| months_bucket(t, 12)),
        ("3year", |t| months_bucket(t, 36)),
        ("10year", |t| months_bucket(t, 120)),
    ];
    for (unit, start) in units {
        let mut expected: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for row in &rows {
            let group = expected.entry(stamp(start(row.at))).or_default();
            group.0 += 1;
            group.1 += row.oil.unwrap_or(0.0);
        }
        let answer = aggregate(
            &server,
            &format!(
                "bucket=production_period:{unit}&metrics=count(),sum(oil_production_kbd)&limit=10000"
            ),
        );
        let got: BTreeMap<String, (i64, f64)> = items(&answer)
            .iter()
            .map(|g| {
                (
                    g["production_period"].as_str().unwrap().to_owned(),
                    (
                        g["count"].as_i64().unwrap(),
                        g["sum_oil_production_kbd"].as_f64().unwrap_or(0.0),
                    ),
                )
            })
            .collect();
        assert_eq!(got, expected, "bucket {unit}");
        assert!(got.len() > 1, "bucket {unit} groups something");
    }
    // the body form buckets the same way
    let body = server.post_json(
        &format!("{WP}/query"),
        &json!({"bucket": ["production_period:15minute"], "metrics": ["count()"]}),
    );
    let url = aggregate(&server, "bucket=production_period:15minute&metrics=count()");
    assert_eq!(items(&body), items(&url));
}

/// The linear interpolation between the two nearest ranks DuckDB's `quantile_cont` does.
fn quantile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p * (sorted.len().checked_sub(1)? as f64);
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    Some(sorted[low] + (position - low as f64) * (sorted[high] - sorted[low]))
}

fn sample_stddev(values: &[f64]) -> Option<f64> {
    let n = values.len() as f64;
    if values.len() < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n;
    Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

fn assert_close(got: &Value, expected: Option<f64>, what: &str) {
    match expected {
        None => assert_eq!(got, &Value::Null, "{what}"),
        Some(expected) => {
            let got = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {got} is not a number"));
            assert!(
                (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "{what}: {got} != {expected}"
            );
        }
    }
}

#[test]
fn new_metrics_match_values_computed_from_the_rows() {
    let (_dir, server, rows) = loaded(&[]);
    let mut by_field: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        by_field.entry(row.field).or_default().push(row);
    }
    let answer = aggregate(
        &server,
        "group_by=field_code&metrics=count_distinct(well_name),count_distinct(oil_production_kbd),median(oil_production_kbd),percentile(oil_production_kbd,0.9),percentile(days_on_production,0.25),stddev(oil_production_kbd),stddev(days_on_production)",
    );
    let groups = items(&answer);
    assert_eq!(groups.len(), by_field.len());
    for (group, (field, rows)) in groups.iter().zip(&by_field) {
        assert_eq!(group["field_code"], json!(field));
        let oil: Vec<f64> = rows.iter().filter_map(|r| r.oil).collect();
        let days: Vec<f64> = rows.iter().map(|r| r.days as f64).collect();
        let distinct = |values: Vec<String>| {
            values
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        let names = distinct(rows.iter().map(|r| r.well_name.clone()).collect());
        let oils = distinct(oil.iter().map(|v| v.to_string()).collect());
        assert_eq!(group["count_distinct_well_name"], json!(names), "{field}");
        assert_eq!(
            group["count_distinct_oil_production_kbd"],
            json!(oils),
            "{field}"
        );
        let what = |m: &str| format!("field {field}: {m}");
        assert_close(
            &group["median_oil_production_kbd"],
            quantile(&oil, 0.5),
            &what("median"),
        );
        assert_close(
            &group["p90_oil_production_kbd"],
            quantile(&oil, 0.9),
            &what("p90"),
        );
        assert_close(
            &group["p25_days_on_production"],
            quantile(&days, 0.25),
            &what("p25"),
        );
        assert_close(
            &group["stddev_oil_production_kbd"],
            sample_stddev(&oil),
            &what("stddev"),
        );
        assert_close(
            &group["stddev_days_on_production"],
            sample_stddev(&days),
            &what("stddev"),
        );
    }
    // the single-row field has no sample deviation
    assert_eq!(
        groups.last().unwrap()["stddev_days_on_production"],
        Value::Null
    );
}

#[test]
fn having_keeps_the_groups_whose_metrics_pass_in_both_forms() {
    let (_dir, server, rows) = loaded(&[]);
    let mut sums: BTreeMap<i64, (f64, i64)> = BTreeMap::new();
    for row in &rows {
        let group = sums.entry(row.field).or_default();
        group.0 += row.oil.unwrap_or(0.0);
        group.1 += 1;
    }
    // a threshold between the groups' sums, so that some pass and some do not
    let mut totals: Vec<f64> = sums.values().map(|(sum, _)| *sum).collect();
    totals.sort_by(f64::total_cmp);
    let threshold = (totals[1] + totals[2]) / 2.0;
    let min_count = 2;
    let expected: Vec<i64> = sums
        .iter()
        .filter(|(_, (sum, count))| *sum > threshold && *count >= min_count)
        .map(|(field, _)| *field)
        .collect();
    assert!(!expected.is_empty() && expected.len() < sums.len());

    let fields = |answer: &support::Answer| -> Vec<i64> {
        items(answer)
            .iter()
            .map(|g| g["field_code"].as_i64().unwrap())
            .collect()
    };
    let url = aggregate(
        &server,
        &format!(
            "group_by=field_code&metrics=sum(oil_production_kbd),count()&having=sum_oil_production_kbd=gt.{threshold}&having=count=gte.{min_count}"
        ),
    );
    assert_eq!(fields(&url), expected);
    let body = server.post_json(
        &format!("{WP}/query"),
        &json!({"group_by": ["field_code"], "metrics": ["sum(oil_production_kbd)", "count()"],
                "having": [format!("sum_oil_production_kbd=gt.{threshold}"), format!("count=gte.{min_count}")]}),
    );
    assert_eq!(fields(&body), expected);
    assert_eq!(items(&body), items(&url));

    // any filter operator applies, with filters on fields before grouping
    let listed: Vec<String> = expected.iter().map(|f| sums[f].1.to_string()).collect();
    let by_count = aggregate(
        &server,
        &format!(
            "group_by=field_code&metrics=count()&having=count=in.({})",
            listed.join(",")
        ),
    );
    let with_counts: Vec<i64> = sums
        .iter()
        .filter(|(_, (_, count))| listed.contains(&count.to_string()))
        .map(|(field, _)| *field)
        .collect();
    assert_eq!(fields(&by_count), with_counts);
    let filtered = aggregate(
        &server,
        "group_by=field_code&metrics=count()&having=count=gt.0&field_code=eq.2",
    );
    assert_eq!(fields(&filtered), vec![2]);
}

#[test]
fn misapplied_parts_are_400s_naming_the_parameter() {
    let (_dir, server, _rows) = loaded(&[]);
    for (query, parameter, detail) in [
        (
            "metrics=percentile(oil_production_kbd,1.5)",
            "metrics",
            "from 0 to 1",
        ),
        (
            "metrics=percentile(oil_production_kbd)",
            "metrics",
            "a fraction from 0 to 1",
        ),
        (
            "metrics=median(well_name)",
            "metrics",
            "applies to integer and float fields",
        ),
        (
            "metrics=stddev(production_period)",
            "metrics",
            "field `production_period` is timestamp",
        ),
        (
            "metrics=count()&having=sum_oil=gt.1",
            "having",
            "`sum_oil` is not a metric",
        ),
        (
            "metrics=count()&having=count=gt.many",
            "having",
            "not a valid integer",
        ),
        (
            "metrics=count()&bucket=production_period:0hour",
            "bucket",
            "from 1 to",
        ),
        (
            "metrics=count()&bucket=production_period:fortnight",
            "bucket",
            "unknown bucket",
        ),
    ] {
        let answer = aggregate(&server, query);
        assert_eq!(answer.status, 400, "{query}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{query}");
        assert_eq!(answer.body["parameter"], parameter, "{query}");
        let text = answer.body["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{query}: {answer:?}");
    }
    for (body, parameter, detail) in [
        (
            json!({"metrics": ["percentile(oil_production_kbd,-1)"]}),
            "metrics",
            "from 0 to 1",
        ),
        (
            json!({"metrics": ["count()"], "having": "nope=gt.1"}),
            "having",
            "`nope` is not a metric",
        ),
        (
            json!({"metrics": ["count()"], "having": 5}),
            "having",
            "string or an array",
        ),
    ] {
        let answer = server.post_json(&format!("{WP}/query"), &body);
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert_eq!(answer.body["parameter"], parameter, "{body}");
        let text = answer.body["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{body}: {answer:?}");
    }
}

#[test]
fn json_groups_without_limit_run_to_max_limit_in_both_forms() {
    let env = [
        ("DATAFORGE_QUERY__DEFAULT_LIMIT", "2"),
        ("DATAFORGE_QUERY__MAX_LIMIT", "3"),
    ];
    let (_dir, server, rows) = loaded(&env);
    let fields: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.field).collect();
    assert!(fields.len() > 3);
    let url = aggregate(&server, "group_by=field_code&metrics=count()");
    let body = server.post_json(
        &format!("{WP}/query"),
        &json!({"group_by": "field_code", "metrics": "count()"}),
    );
    for answer in [&url, &body] {
        assert_eq!(items(answer).len(), 3, "{answer:?}");
        assert_eq!(answer.body["truncated"], true);
    }
    // a listing's page size stays default_limit
    assert_eq!(items(&server.get(&format!("{WP}/records"))).len(), 2);
}

#[test]
fn both_null_test_names_select_the_same_rows() {
    let (_dir, server, rows) = loaded(&[]);
    let nulls = rows.iter().filter(|r| r.oil.is_none()).count();
    let count = |filter: &str| {
        let answer = server.get(&format!("{WP}/count?{filter}"));
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["count"].as_u64().unwrap() as usize
    };
    assert_eq!(count("oil_production_kbd=is.null"), nulls);
    assert_eq!(count("oil_production_kbd=is_null.true"), nulls);
    assert_eq!(
        count("oil_production_kbd=is_null.false"),
        rows.len() - nulls
    );
    let query = |filter: Value| {
        let answer = server.post_json(
            &format!("{WP}/query"),
            &json!({"filter": filter, "metrics": ["count()"]}),
        );
        items(&answer)[0]["count"].as_u64().unwrap() as usize
    };
    assert_eq!(query(json!({"is": {"oil_production_kbd": "null"}})), nulls);
    assert_eq!(query(json!({"is_null": "oil_production_kbd"})), nulls);
    assert_eq!(
        query(json!({"is": {"oil_production_kbd": "notnull"}})),
        rows.len() - nulls
    );
}
