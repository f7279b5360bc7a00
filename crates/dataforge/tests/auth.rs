//! Access control end to end: API keys made by `dataforge keys` on the real binary, each
//! permission on each verb allowed and denied, row rules on reads and writes, keys created,
//! revoked and expired under a running server, JWTs of each algorithm and each failing claim, and
//! per-credential rate limits.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Answer, Server, answer, create_key, run, temp_db, well};

const WR: &str = "/v1/datasets/well_registry";

/// A request with an optional bearer token and JSON body.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    server.send_as(token, method, path, body)
}

fn codes(answer: &Answer) -> Vec<i64> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["well_code"].as_i64().unwrap())
        .collect()
}

fn required() -> [(&'static str, &'static str); 1] {
    [("DATAFORGE_AUTH__REQUIRED", "true")]
}

/// Every route, the permission it needs, and a request that would succeed with it.
fn routes() -> Vec<(&'static str, &'static str, String, Option<Value>)> {
    vec![
        ("read", "GET", format!("{WR}/records"), None),
        ("read", "GET", format!("{WR}/records?format=csv"), None),
        ("read", "GET", format!("{WR}/records/1"), None),
        ("read", "GET", format!("{WR}/count"), None),
        (
            "read",
            "GET",
            format!("{WR}/aggregate?group_by=field_code&metrics=count()"),
            None,
        ),
        (
            "read",
            "POST",
            format!("{WR}/query"),
            Some(json!({"limit": 5})),
        ),
        (
            "write",
            "POST",
            format!("{WR}/records"),
            Some(json!([well(50, 10)])),
        ),
        (
            "write",
            "PUT",
            format!("{WR}/records/51"),
            Some(well(51, 10)),
        ),
        (
            "update",
            "PATCH",
            format!("{WR}/records/1"),
            Some(json!({"depth_m": 5})),
        ),
        (
            "update",
            "PATCH",
            format!("{WR}/records?well_code=eq.2"),
            Some(json!({"depth_m": 6})),
        ),
        (
            "update",
            "POST",
            format!("{WR}/update"),
            Some(json!({"filter": {"eq": {"well_code": 3}}, "set": {"depth_m": 7}})),
        ),
        ("delete", "DELETE", format!("{WR}/records/4"), None),
        (
            "delete",
            "DELETE",
            format!("{WR}/records?well_code=eq.5"),
            None,
        ),
        (
            "delete",
            "POST",
            format!("{WR}/delete"),
            Some(json!({"filter": {"eq": {"well_code": 6}}})),
        ),
    ]
}

#[test]
fn each_permission_opens_its_verbs_and_no_other() {
    let (_dir, db) = temp_db();
    let perms = ["read", "write", "update", "delete"];
    let keys: Vec<(&str, String)> = perms
        .iter()
        .map(|p| {
            (
                *p,
                create_key(&db, p, &[&format!("well_registry:{p}")], None),
            )
        })
        .collect();
    let all = create_key(&db, "all", &["*:read,write,update,delete"], None);
    let other = create_key(
        &db,
        "other",
        &["well_production:read,write,update,delete,admin"],
        None,
    );
    let server = Server::start_with(&db, &support::shipped_schemas(), &required());

    // no credential, a bad one, a malformed header: 401 with a challenge; /health stays open
    for token in [None, Some("dfk_nonsense"), Some("not.a.jwt")] {
        let refused = call(&server, "GET", &format!("{WR}/records"), token, None);
        assert_eq!(refused.status, 401, "{token:?}: {refused:?}");
        assert_eq!(refused.content_type, "application/problem+json");
    }
    let raw = ureq::get(&format!("{}{WR}/records", server.base))
        .set("Authorization", "Basic eDp5")
        .call();
    let Err(ureq::Error::Status(401, response)) = raw else {
        panic!("Basic is refused")
    };
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"dataforge\", error=\"invalid_token\"")
    );
    assert_eq!(server.get("/health").status, 200);

    let seeded = call(
        &server,
        "POST",
        &format!("{WR}/records"),
        Some(&all),
        Some(&json!((1..=9).map(|c| well(c, 10)).collect::<Vec<_>>())),
    );
    assert_eq!(seeded.status, 201, "{seeded:?}");

    for (needed, method, path, body) in routes() {
        for (perm, key) in &keys {
            let answered = call(&server, method, &path, Some(key), body.as_ref());
            if *perm == needed {
                assert!(
                    answered.status < 300,
                    "{perm} may {method} {path}: {answered:?}"
                );
            } else {
                assert_eq!(
                    answered.status, 403,
                    "{perm} may not {method} {path}: {answered:?}"
                );
                assert_eq!(answered.body["dataset"], json!("well_registry"));
                assert_eq!(answered.body["permission"], json!(needed));
                assert!(
                    answered.body["detail"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("`{perm}` has no `{needed}` permission")),
                    "{answered:?}"
                );
            }
        }
        // a credential for another dataset only
        assert_eq!(
            call(&server, method, &path, Some(&other), body.as_ref()).status,
            403,
            "{method} {path}"
        );
    }
    // the list shows what a credential may touch
    let listed = call(&server, "GET", "/v1/datasets", Some(&other), None);
    let names: Vec<&str> = listed.body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["well_production"]);
    assert_eq!(call(&server, "GET", WR, Some(&other), None).status, 403);
    assert_eq!(call(&server, "GET", WR, Some(&keys[0].1), None).status, 200);
}

#[test]
fn row_rules_narrow_every_read_and_bound_every_change() {
    let (_dir, db) = temp_db();
    let all = create_key(&db, "all", &["*:read,write,update,delete"], None);
    let ruled = create_key(
        &db,
        "field10",
        &["well_registry:read,write,update,delete:field_code=eq.10"],
        None,
    );
    let server = Server::start_with(&db, &support::shipped_schemas(), &required());
    let wells: Vec<Value> = (1..=6)
        .map(|c| well(c, if c <= 3 { 10 } else { 20 }))
        .collect();
    assert_eq!(
        call(
            &server,
            "POST",
            &format!("{WR}/records"),
            Some(&all),
            Some(&json!(wells))
        )
        .status,
        201
    );
    let get = |path: &str| call(&server, "GET", path, Some(&ruled), None);

    // reads: pages, counts, aggregates, queries and exports see only the rule's rows
    assert_eq!(codes(&get(&format!("{WR}/records"))), vec![1, 2, 3]);
    assert_eq!(
        codes(&get(&format!("{WR}/records?well_code=gte.3"))),
        vec![3]
    );
    assert_eq!(get(&format!("{WR}/count")).body["count"], json!(3));
    let groups = get(&format!(
        "{WR}/aggregate?group_by=field_code&metrics=count()"
    ));
    assert_eq!(
        groups.body["items"],
        json!([{"field_code": 10, "count": 3}]),
        "{groups:?}"
    );
    let queried = call(
        &server,
        "POST",
        &format!("{WR}/query"),
        Some(&ruled),
        Some(&json!({"filter": {"gt": {"well_code": 0}}})),
    );
    assert_eq!(codes(&queried), vec![1, 2, 3]);
    let csv = ureq::get(&format!("{}{WR}/records?format=csv", server.base))
        .set("Authorization", &format!("Bearer {ruled}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and three rows: {csv}");
    assert_eq!(
        get(&format!("{WR}/records/4")).status,
        404,
        "a record outside the rule is not found"
    );
    assert_eq!(get(&format!("{WR}/records/1")).status, 200);

    // writes: every record must satisfy the rule, all or nothing; no upserts over others' records
    let outside = call(
        &server,
        "POST",
        &format!("{WR}/records"),
        Some(&ruled),
        Some(&json!([well(7, 10), well(8, 20)])),
    );
    assert_eq!(outside.status, 403, "{outside:?}");
    assert_eq!(outside.body["rule"], json!("field_code=eq.10"));
    assert!(
        outside.body["detail"]
            .as_str()
            .unwrap()
            .contains("record 2"),
        "{outside:?}"
    );
    assert_eq!(
        call(&server, "GET", &format!("{WR}/records/7"), Some(&all), None).status,
        404,
        "nothing was written"
    );
    assert_eq!(
        call(
            &server,
            "POST",
            &format!("{WR}/records"),
            Some(&ruled),
            Some(&json!([well(7, 10)]))
        )
        .status,
        201
    );
    let upsert = call(
        &server,
        "POST",
        &format!("{WR}/records?on_conflict=upsert"),
        Some(&ruled),
        Some(&json!([well(4, 10)])),
    );
    assert_eq!(upsert.status, 403, "{upsert:?}");
    let replace = call(
        &server,
        "PUT",
        &format!("{WR}/records/4"),
        Some(&ruled),
        Some(&well(4, 10)),
    );
    assert_eq!(
        replace.status, 409,
        "a stored record outside the rule is not replaced: {replace:?}"
    );
    assert_eq!(
        call(
            &server,
            "PUT",
            &format!("{WR}/records/5"),
            Some(&ruled),
            Some(&well(5, 20))
        )
        .status,
        403
    );

    // updates: only the rule's records, and never out of it
    assert_eq!(
        call(
            &server,
            "PATCH",
            &format!("{WR}/records/4"),
            Some(&ruled),
            Some(&json!({"depth_m": 1}))
        )
        .status,
        404
    );
    let moved = call(
        &server,
        "PATCH",
        &format!("{WR}/records/1"),
        Some(&ruled),
        Some(&json!({"field_code": 20})),
    );
    assert_eq!(moved.status, 403, "{moved:?}");
    let updated = call(
        &server,
        "PATCH",
        &format!("{WR}/records?depth_m=gt.0"),
        Some(&ruled),
        Some(&json!({"depth_m": 5})),
    );
    assert_eq!(updated.body["updated"], json!(4), "{updated:?}");
    let untouched = call(&server, "GET", &format!("{WR}/records/4"), Some(&all), None);
    assert_eq!(untouched.body["depth_m"], json!(1000.0));

    // deletes: only the rule's records
    let deleted = call(
        &server,
        "DELETE",
        &format!("{WR}/records?all=true"),
        Some(&ruled),
        None,
    );
    assert_eq!(deleted.body["deleted"], json!(4), "{deleted:?}");
    assert_eq!(
        call(
            &server,
            "DELETE",
            &format!("{WR}/records/5"),
            Some(&ruled),
            None
        )
        .status,
        404
    );
    let left = call(&server, "GET", &format!("{WR}/records"), Some(&all), None);
    assert_eq!(codes(&left), vec![4, 5, 6]);
}

#[test]
fn keys_created_revoked_and_expired_apply_to_a_running_server() {
    let (_dir, db) = temp_db();
    let expired = create_key(&db, "expired", &["*:read"], Some("2001-01-01"));
    let server = Server::start_with(&db, &support::shipped_schemas(), &required());
    let refused = call(&server, "GET", &format!("{WR}/count"), Some(&expired), None);
    assert_eq!(refused.status, 401);
    assert!(
        refused.body["detail"].as_str().unwrap().contains("expired"),
        "{refused:?}"
    );

    let late = create_key(&db, "late", &["*:read"], Some("2999-01-01"));
    let within = |want: u16, token: &str| {
        let started = Instant::now();
        loop {
            let status = call(&server, "GET", &format!("{WR}/count"), Some(token), None).status;
            if status == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "still {status}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    within(200, &late);
    let (code, stdout, _) = run(
        &["keys", "--db", db.to_str().unwrap(), "list"],
        db.parent().unwrap(),
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("late\t*:read\texpires 2999-01-01T00:00:00+00:00"),
        "{stdout}"
    );
    assert!(!stdout.contains(&late[4..]), "list never shows secrets");
    let (code, _, stderr) = run(
        &["keys", "--db", db.to_str().unwrap(), "revoke", "late"],
        db.parent().unwrap(),
    );
    assert_eq!(code, 0, "{stderr}");
    within(401, &late);
    let (code, _, stderr) = run(
        &[
            "keys",
            "--db",
            db.to_str().unwrap(),
            "create",
            "--name",
            "x",
            "--grant",
            "*:fly",
        ],
        db.parent().unwrap(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("`fly` is not a permission"), "{stderr}");
}

#[test]
fn credentials_are_held_to_their_rate() {
    let (_dir, db) = temp_db();
    let key = create_key(&db, "fast", &["*:read"], None);
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[
            ("DATAFORGE_AUTH__REQUIRED", "true"),
            ("DATAFORGE_AUTH__REQUESTS_PER_SECOND", "5"),
        ],
    );
    let statuses: Vec<u16> = (0..20)
        .map(|_| call(&server, "GET", &format!("{WR}/count"), Some(&key), None).status)
        .collect();
    assert!(
        statuses[..5].iter().all(|s| *s == 200),
        "a burst of 5 passes: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = ureq::get(&format!("{}{WR}/count", server.base))
        .set("Authorization", &format!("Bearer {key}"))
        .call();
    let Err(ureq::Error::Status(429, response)) = limited else {
        panic!("still limited")
    };
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        response
            .into_string()
            .unwrap()
            .contains("auth.requests_per_second")
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        call(&server, "GET", &format!("{WR}/count"), Some(&key), None).status,
        200
    );
}

#[test]
fn a_network_address_requires_credentials_unless_said_otherwise() {
    let (_dir, db) = temp_db();
    let server = Server::start_on("0.0.0.0:0", &db, &support::shipped_schemas(), &[]);
    let base = server.base.replace("0.0.0.0", "127.0.0.1");
    let refused = answer(ureq::get(&format!("{base}{WR}/count")).call());
    assert_eq!(refused.status, 401, "{refused:?}");
    server.stop();
    let open = Server::start_on(
        "0.0.0.0:0",
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "false")],
    );
    let base = open.base.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(
        answer(ureq::get(&format!("{base}{WR}/count")).call()).status,
        200
    );
    assert!(
        open.log_lines()
            .iter()
            .any(|l| l.contains("auth.required = false on a network address"))
    );
    // on loopback nothing is required by default
    let (_dir2, db2) = temp_db();
    let local = Server::start(&db2);
    assert_eq!(local.get(&format!("{WR}/count")).status, 200);
}

mod jwt {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;

    const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Signing keys of the three algorithms, and the JWKS of the two public ones.
    struct Keys {
        rsa: EncodingKey,
        ec: EncodingKey,
        jwks: Value,
    }

    fn keys(dir: &Path) -> Keys {
        let pem = dir.join("rsa.pem");
        let made = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem)
            .arg("2048")
            .output()
            .expect("openssl makes an RSA key");
        assert!(made.status.success());
        let modulus = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&pem)
            .output()
            .unwrap();
        let hex = String::from_utf8(modulus.stdout).unwrap();
        let hex = hex.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref(); // 0x04, x, y
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        Keys {
            rsa: EncodingKey::from_rsa_pem(&std::fs::read(&pem).unwrap()).unwrap(),
            ec: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks: json!({"keys": [
                {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB"},
                {"kty": "EC", "kid": "e1", "alg": "ES256", "use": "sig", "crv": "P-256",
                 "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            ]}),
        }
    }

    fn token(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
        let mut header = Header::new(alg);
        header.kid = match alg {
            Algorithm::RS256 => Some("r1".into()),
            Algorithm::ES256 => Some("e1".into()),
            _ => None,
        };
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({"sub": "ana", "iss": "https://id.example", "aud": "dataforge",
                                "exp": now() + 600, "roles": ["analyst"]});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    #[test]
    fn tokens_of_each_algorithm_work_and_each_failing_claim_is_refused() {
        let (dir, db) = temp_db();
        let keys = keys(dir.path());
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, keys.jwks.to_string()).unwrap();
        let config = dir.path().join("dataforge.toml");
        std::fs::write(
            &config,
            format!(
                "[auth]\nrequired = true\n[auth.jwt]\nhs256_secret = \"{SECRET}\"\njwks_file = \"{}\"\nissuer = \"https://id.example\"\naudience = \"dataforge\"\n[auth.jwt.roles]\nanalyst = [\"well_registry:read\"]\n",
                jwks.display()
            ),
        )
        .unwrap();
        // read from the server's working directory, the database's
        let server = Server::start(&db);
        let hs = EncodingKey::from_secret(SECRET.as_bytes());
        let signed = [
            (Algorithm::HS256, &hs),
            (Algorithm::RS256, &keys.rsa),
            (Algorithm::ES256, &keys.ec),
        ];
        let read = format!("{WR}/count");
        for (alg, key) in signed {
            let good = token(alg, key, claims(json!({})));
            assert_eq!(
                call(&server, "GET", &read, Some(&good), None).status,
                200,
                "{alg:?}"
            );
            let denied = call(
                &server,
                "POST",
                &format!("{WR}/records"),
                Some(&good),
                Some(&json!([well(1, 1)])),
            );
            assert_eq!(denied.status, 403, "{alg:?}: the role grants read only");
            assert!(
                denied.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("`jwt:ana` has no `write`"),
                "{denied:?}"
            );
            for (why, extra) in [
                ("expired", json!({"exp": now() - 600})),
                ("not yet valid", json!({"nbf": now() + 600})),
                ("another issuer", json!({"iss": "https://evil.example"})),
                ("another audience", json!({"aud": "someone-else"})),
            ] {
                let refused = call(
                    &server,
                    "GET",
                    &read,
                    Some(&token(alg, key, claims(extra))),
                    None,
                );
                assert_eq!(refused.status, 401, "{alg:?} {why}: {refused:?}");
                assert!(
                    refused.body["detail"]
                        .as_str()
                        .unwrap()
                        .starts_with("the JWT is refused")
                );
            }
            let mut forged = good.clone();
            forged.truncate(forged.len() - 4);
            forged.push_str("AAAA");
            assert_eq!(
                call(&server, "GET", &read, Some(&forged), None).status,
                401,
                "{alg:?} forged"
            );
        }
        let no_exp = token(
            Algorithm::HS256,
            &hs,
            json!({"sub": "x", "iss": "https://id.example", "aud": "dataforge"}),
        );
        assert_eq!(call(&server, "GET", &read, Some(&no_exp), None).status, 401);
        let stranger = token(Algorithm::HS256, &hs, claims(json!({"roles": ["visitor"]})));
        assert_eq!(
            call(&server, "GET", &read, Some(&stranger), None).status,
            403,
            "a role with no grants"
        );
        let other_secret = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!");
        assert_eq!(
            call(
                &server,
                "GET",
                &read,
                Some(&token(Algorithm::HS256, &other_secret, claims(json!({})))),
                None
            )
            .status,
            401
        );
    }
}
