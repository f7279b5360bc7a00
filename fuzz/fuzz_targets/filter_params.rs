//! URL parameters of a listing, a count and an aggregate: any text is an answer or an error.
#![no_main]

use dataforge_domain::query::{
    QueryLimits, parse_aggregate_params, parse_count_params, parse_list_params,
};
use dataforge_domain::testing::wells;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // `name=value` pairs separated by newlines (no URL decoding: the parser sees decoded text)
    let params: Vec<(String, String)> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect();
    let schema = wells();
    let limits = QueryLimits::default();
    let _ = parse_list_params(&schema, &params, limits, true);
    let _ = parse_count_params(&schema, &params);
    let _ = parse_aggregate_params(&schema, &params, limits, true);
});
