//! A streamed export without `order` comes in primary-key order, whatever order the records were
//! written and changed in, so two exports of the same data are identical.

mod support;

use serde_json::json;
use support::{Server, temp_db, well};

#[test]
fn an_unordered_export_comes_in_key_order() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    // written out of order, in several requests, one changed later
    for codes in [[907, 3, 55], [12, 600, 1], [250, 8, 31]] {
        let records: Vec<_> = codes.iter().map(|&c| well(c, c % 7)).collect();
        assert_eq!(
            server
                .post_json("/v1/datasets/well_registry/records", &json!(records))
                .status,
            201
        );
    }
    let patched = server.send(
        "PATCH",
        "/v1/datasets/well_registry/records/3",
        Some(&json!({"field_code": 99})),
    );
    assert_eq!(patched.status, 200, "{patched:?}");
    let export = || {
        ureq::get(&format!(
            "{}/v1/datasets/well_registry/records?format=ndjson",
            server.base
        ))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
    };
    let first = export();
    let codes: Vec<i64> = first
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["well_code"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, [1, 3, 8, 12, 31, 55, 250, 600, 907]);
    assert_eq!(
        export(),
        first,
        "two exports of the same data are identical"
    );
}
