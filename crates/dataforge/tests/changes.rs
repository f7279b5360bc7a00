//! Updating and deleting stored records end to end: by key (PATCH, PUT, DELETE), by filter (URL
//! filters and JSON trees), `on_conflict=merge`, and every read path seeing each change, before
//! and after a restart.

mod support;

use serde_json::{Value, json};
use support::{Answer, Server, production, stored, temp_db, well};

const WR: &str = "/v1/datasets/well_registry";
const WP: &str = "/v1/datasets/well_production";

fn count(server: &Server, path: &str) -> u64 {
    let answer = server.get(path);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["count"].as_u64().expect("a count")
}

/// The well codes of a page (read from the declared index when filtered on `field_code` alone).
fn codes(server: &Server, query: &str) -> Vec<i64> {
    let answer = server.get(&format!("{WR}/records?{query}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["well_code"].as_i64().expect("a code"))
        .collect()
}

/// The well codes of a CSV export (always read through DuckDB).
fn exported_codes(server: &Server) -> Vec<i64> {
    let text = ureq::get(&format!(
        "{}{WR}/records?format=csv&order=well_code",
        server.base
    ))
    .call()
    .expect("export")
    .into_string()
    .expect("text");
    text.lines()
        .skip(1)
        .map(|line| {
            line.split(',')
                .next()
                .unwrap_or_default()
                .parse()
                .expect("code")
        })
        .collect()
}

fn error_fields(answer: &Answer) -> Vec<(String, String)> {
    answer.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn one_record_by_key_patch_put_delete() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let wells: Vec<Value> = (1..=5)
        .map(|c| well(c, if c <= 3 { 10 } else { 20 }))
        .collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(wells))
            .status,
        201
    );

    // PATCH changes the named fields only, and answers the stored record
    let patched = server.send(
        "PATCH",
        &format!("{WR}/records/1"),
        Some(&json!({"depth_m": 2000, "status": "shut_in", "field_code": 20})),
    );
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["depth_m"], json!(2000.0));
    assert_eq!(patched.body["status"], json!("shut_in"));
    assert_eq!(
        patched.body["well_name"],
        json!("W1"),
        "an unnamed field keeps its value"
    );
    assert_eq!(server.get(&format!("{WR}/records/1")).body, patched.body);
    // the declared index on field_code follows the change
    assert_eq!(codes(&server, "field_code=eq.10"), vec![2, 3]);
    assert_eq!(codes(&server, "field_code=eq.20"), vec![1, 4, 5]);
    assert_eq!(count(&server, &format!("{WR}/count?status=eq.shut_in")), 1);

    // what a PATCH may not do
    for (body, field, code) in [
        (json!({"well_code": 9}), "well_code", "key_field"),
        (json!({"status": "flooded"}), "status", "one_of"),
        (json!({"well_name": null}), "well_name", "required"),
        (json!({"depth_m": "deep"}), "depth_m", "type"),
        (json!({"colour": "red"}), "colour", "unknown_field"),
    ] {
        let refused = server.send("PATCH", &format!("{WR}/records/2"), Some(&body));
        assert_eq!(refused.status, 422, "{body}: {refused:?}");
        assert_eq!(refused.content_type, "application/problem+json");
        assert_eq!(
            error_fields(&refused),
            vec![(field.to_owned(), code.to_owned())]
        );
    }
    assert_eq!(
        server.get(&format!("{WR}/records/2")).body["depth_m"],
        json!(1000.0)
    );
    let absent = server.send(
        "PATCH",
        &format!("{WR}/records/99"),
        Some(&json!({"depth_m": 1})),
    );
    assert_eq!(absent.status, 404, "{absent:?}");
    let bad_key = server.send(
        "PATCH",
        &format!("{WR}/records/x"),
        Some(&json!({"depth_m": 1})),
    );
    assert_eq!(
        (bad_key.status, bad_key.body["parameter"].clone()),
        (400, json!("key"))
    );
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let body = (method != "GET" && method != "DELETE").then(|| json!({"depth_m": 1}));
        let invalid = server.send(method, &format!("{WR}/records/%FF"), body.as_ref());
        assert_eq!(invalid.status, 400, "{method}: {invalid:?}");
        assert_eq!(invalid.content_type, "application/problem+json");
        assert_eq!(invalid.body["parameter"], json!("key"));
    }
    // a body needs its Content-Type (a page on another site can send one without); and JSON
    let untyped = server.send("PATCH", &format!("{WR}/records/2"), None);
    assert_eq!(untyped.status, 415, "{untyped:?}");
    let not_json = ureq::request("PATCH", &format!("{}{WR}/records/2", server.base))
        .set("Content-Type", "application/json")
        .send_string("{depth");
    let Err(ureq::Error::Status(status, _)) = not_json else {
        panic!("malformed JSON was accepted")
    };
    assert_eq!(status, 400);

    // PUT replaces a whole record (omitted fields take their defaults or null) or creates one
    let replaced = server.send(
        "PUT",
        &format!("{WR}/records/2"),
        Some(&json!({"well_name": "W2b", "field_code": 10})),
    );
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(replaced.body["well_code"], json!(2));
    assert_eq!(replaced.body["status"], json!("producing"));
    assert_eq!(replaced.body["depth_m"], Value::Null);
    let created = server.send(
        "PUT",
        &format!("{WR}/records/77"),
        Some(&json!({"well_code": 77, "well_name": "W77", "field_code": 10})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(codes(&server, "field_code=eq.10"), vec![2, 3, 77]);
    // a replacement moves the record in the declared index too
    let moved = server.send(
        "PUT",
        &format!("{WR}/records/5"),
        Some(&json!({"well_name": "W5", "field_code": 10})),
    );
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(codes(&server, "field_code=eq.10"), vec![2, 3, 5, 77]);
    assert_eq!(codes(&server, "field_code=eq.20"), vec![1, 4]);
    let back = json!({"well_name": "W5", "field_code": 20, "depth_m": 1000.0, "operator": "Acme"});
    assert_eq!(
        server
            .send("PUT", &format!("{WR}/records/5"), Some(&back))
            .status,
        200
    );
    let mismatch = server.send(
        "PUT",
        &format!("{WR}/records/3"),
        Some(&json!({"well_code": 4, "well_name": "W", "field_code": 10})),
    );
    assert_eq!(mismatch.status, 422, "{mismatch:?}");
    assert_eq!(
        error_fields(&mismatch),
        vec![("well_code".into(), "key_mismatch".into())]
    );
    let invalid = server.send(
        "PUT",
        &format!("{WR}/records/3"),
        Some(&json!({"field_code": 10})),
    );
    assert_eq!(
        error_fields(&invalid),
        vec![("well_name".into(), "required".into())]
    );
    assert_eq!(
        server.get(&format!("{WR}/records/3")).body["well_name"],
        json!("W3")
    );

    // DELETE removes it from every read path; the key can be inserted again
    let deleted = server.send("DELETE", &format!("{WR}/records/3"), None);
    assert_eq!((deleted.status, deleted.body.clone()), (204, Value::Null));
    assert_eq!(server.get(&format!("{WR}/records/3")).status, 404);
    assert_eq!(
        server
            .send("DELETE", &format!("{WR}/records/3"), None)
            .status,
        404
    );
    assert_eq!(codes(&server, "field_code=eq.10"), vec![2, 77]);
    assert_eq!(exported_codes(&server), vec![1, 2, 4, 5, 77]);
    assert_eq!(count(&server, &format!("{WR}/count")), 5);
    let groups = server.get(&format!(
        "{WR}/aggregate?group_by=field_code&metrics=count()"
    ));
    assert_eq!(
        groups.body["items"],
        json!([{"field_code": 10, "count": 2}, {"field_code": 20, "count": 3}])
    );
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &well(3, 30))
            .status,
        201
    );
    assert_eq!(
        server.get(&format!("{WR}/records/3")).body["field_code"],
        json!(30)
    );

    // a restart finds the same records on every path
    server.stop();
    let server = Server::start(&db);
    assert_eq!(server.get(&format!("{WR}/records/1")).body, patched.body);
    assert_eq!(codes(&server, "field_code=eq.10"), vec![2, 77]);
    assert_eq!(codes(&server, "field_code=eq.30"), vec![3]);
    assert_eq!(exported_codes(&server), vec![1, 2, 3, 4, 5, 77]);
}

#[test]
fn many_records_by_filter() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let records: Vec<Value> = (0..48).map(production).collect();
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &json!(records))
            .status,
        201
    );

    // a change with no filter must say all=true
    for (method, body) in [
        ("DELETE", None),
        ("PATCH", Some(json!({"data_source": "X"}))),
    ] {
        let refused = server.send(method, &format!("{WP}/records"), body.as_ref());
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(refused.body["parameter"], json!("all"));
    }
    // max_affected refuses a larger change, changing nothing
    let early = "production_period=lt.2020-04-01";
    let refused = server.send(
        "DELETE",
        &format!("{WP}/records?{early}&max_affected=5"),
        None,
    );
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(
        (
            refused.body["affected"].clone(),
            refused.body["max_affected"].clone()
        ),
        (json!(12), json!(5))
    );
    assert_eq!(count(&server, &format!("{WP}/count")), 48);
    // a retention delete
    let deleted = server.send(
        "DELETE",
        &format!("{WP}/records?{early}&max_affected=12"),
        None,
    );
    assert_eq!(
        (deleted.status, deleted.body.clone()),
        (200, json!({"deleted": 12}))
    );
    assert_eq!(count(&server, &format!("{WP}/count")), 36);
    assert_eq!(count(&server, &format!("{WP}/count?{early}")), 0);
    let first = production(0);
    let by_key = format!(
        "{WP}/records/{}/{}/{}",
        first["field_code"], first["well_code"], "2020-01-01T00:00:00Z"
    );
    assert_eq!(server.get(&by_key).status, 404);

    // an update by URL filters
    let updated = server.send(
        "PATCH",
        &format!("{WP}/records?production_period=gte.2020-10-01"),
        Some(&json!({"data_source": "FIX", "oil_production_kbd": 9.5})),
    );
    assert_eq!(
        (updated.status, updated.body.clone()),
        (200, json!({"updated": 12}))
    );
    assert_eq!(
        count(&server, &format!("{WP}/count?data_source=eq.FIX")),
        12
    );
    assert_eq!(stored(&server, 11)["data_source"], json!("FIX"));
    assert_eq!(stored(&server, 11)["oil_production_kbd"], json!(9.5));
    assert_eq!(
        stored(&server, 8)["data_source"],
        json!("ANP"),
        "September is not selected"
    );
    let invalid = server.send(
        "PATCH",
        &format!("{WP}/records?production_period=gte.2020-10-01"),
        Some(&json!({"oil_production_kbd": -1})),
    );
    assert_eq!(invalid.status, 422, "{invalid:?}");
    let bad_filter = server.send("DELETE", &format!("{WP}/records?nope=eq.1"), None);
    assert_eq!(
        (bad_filter.status, bad_filter.body["parameter"].clone()),
        (400, json!("nope"))
    );

    // JSON filter trees
    let tree = server.post_json(
        &format!("{WP}/update"),
        &json!({"filter": {"or": [{"eq": {"well_code": 100000}}, {"eq": {"well_code": 100001}}]},
                "set": {"partition_0": "moved"}}),
    );
    assert_eq!(
        (tree.status, tree.body.clone()),
        (200, json!({"updated": 18}))
    );
    let gone = server.post_json(
        &format!("{WP}/delete"),
        &json!({"filter": {"eq": {"partition_0": "moved"}}, "max_affected": 100}),
    );
    assert_eq!(
        (gone.status, gone.body.clone()),
        (200, json!({"deleted": 18}))
    );
    let refused = server.post_json(&format!("{WP}/delete"), &json!({}));
    assert_eq!(
        (refused.status, refused.body["parameter"].clone()),
        (400, json!("all"))
    );
    let refused = server.post_json(
        &format!("{WP}/delete"),
        &json!({"filter": {"gt": {"nope": 1}}}),
    );
    assert_eq!(
        (refused.status, refused.body["parameter"].clone()),
        (400, json!("filter.gt"))
    );
    assert_eq!(count(&server, &format!("{WP}/count")), 18);

    // nothing selected: nothing changed, not an error
    let none = server.send("DELETE", &format!("{WP}/records?well_code=eq.1"), None);
    assert_eq!(none.body, json!({"deleted": 0}));
    let all = server.send("DELETE", &format!("{WP}/records?all=true"), None);
    assert_eq!(all.body, json!({"deleted": 18}));
    assert_eq!(count(&server, &format!("{WP}/count")), 0);
    server.stop();
    let server = Server::start(&db);
    assert_eq!(count(&server, &format!("{WP}/count")), 0);
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &production(0))
            .status,
        201
    );
}

#[test]
fn merge_keeps_the_fields_a_record_leaves_out() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let mut first = well(1, 10);
    first["status"] = json!("shut_in");
    assert_eq!(
        server.post_json(&format!("{WR}/records"), &first).status,
        201
    );

    let merged = server.post_json(
        &format!("{WR}/records?on_conflict=merge"),
        &json!([{"well_code": 1, "depth_m": 1500},
                {"well_code": 8, "well_name": "W8", "field_code": 30}]),
    );
    assert_eq!(merged.status, 201, "{merged:?}");
    assert_eq!(
        (
            merged.body["inserted"].clone(),
            merged.body["updated"].clone()
        ),
        (json!(1), json!(1))
    );
    let one = server.get(&format!("{WR}/records/1")).body;
    assert_eq!(one["depth_m"], json!(1500.0));
    assert_eq!(
        (
            one["status"].clone(),
            one["operator"].clone(),
            one["well_name"].clone()
        ),
        (json!("shut_in"), json!("Acme"), json!("W1"))
    );
    assert_eq!(
        server.get(&format!("{WR}/records/8")).body["status"],
        json!("producing"),
        "a new key takes the defaults"
    );
    assert_eq!(codes(&server, "field_code=eq.30"), vec![8]);

    // a new key must be complete; rules still apply to partial records; nothing is written
    let incomplete = server.post_json(
        &format!("{WR}/records?on_conflict=merge"),
        &json!([{"well_code": 1, "depth_m": 1600}, {"well_code": 9, "field_code": 30}]),
    );
    assert_eq!(incomplete.status, 422, "{incomplete:?}");
    assert_eq!(
        error_fields(&incomplete),
        vec![("well_name".into(), "required".into())]
    );
    assert_eq!(incomplete.body["errors"][0]["row"], json!(2));
    let invalid = server.post_json(
        &format!("{WR}/records?on_conflict=merge"),
        &json!({"well_code": 1, "depth_m": -5}),
    );
    assert_eq!(
        error_fields(&invalid),
        vec![("depth_m".into(), "min".into())]
    );
    assert_eq!(
        server.get(&format!("{WR}/records/1")).body["depth_m"],
        json!(1500.0)
    );
    assert_eq!(server.get(&format!("{WR}/records/9")).status, 404);

    // CSV merges its columns; upsert still replaces the whole record
    let csv = server.post_raw(
        &format!("{WR}/records?on_conflict=merge"),
        "text/csv",
        b"well_code,operator\r\n1,Zeta\r\n",
    );
    assert_eq!(csv.status, 201, "{csv:?}");
    let one = server.get(&format!("{WR}/records/1")).body;
    assert_eq!(
        (one["operator"].clone(), one["depth_m"].clone()),
        (json!("Zeta"), json!(1500.0))
    );
    let upsert = server.post_json(
        &format!("{WR}/records?on_conflict=upsert"),
        &json!({"well_code": 1, "well_name": "W1", "field_code": 10}),
    );
    assert_eq!(upsert.status, 201);
    assert_eq!(
        server.get(&format!("{WR}/records/1")).body["operator"],
        Value::Null
    );
}
