//! A `POST .../query` body: any bytes are an answer or an error.
#![no_main]

use dataforge_domain::query::{QueryLimits, parse_query_body};
use dataforge_domain::testing::wells;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = parse_query_body(&wells(), &body, QueryLimits::default(), true);
        let _ = parse_query_body(&wells(), &body, QueryLimits::default(), false);
    }
});
