//! Import through a running server's API (`--url`): each file is streamed as the body of one
//! `POST /v1/datasets/{dataset}/records`, with the same progress bar and summary as the embedded
//! import, and the server's answer (counts, or the problem with its rows and keys) printed.

use std::io::BufReader;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wire::fail;

use super::{
    ImportArgs, Source, Summary, conflict_line, open_tracked, print_summary, sources,
    violation_line,
};

/// Sends every file in turn: success when all were written, 2 when the server refuses at once.
/// (The write options were checked already; they are sent as given.)
pub fn import(url: &str, token: Option<&str>, args: &ImportArgs) -> ExitCode {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .build();
    let endpoint = format!(
        "{}/v1/datasets/{}/records",
        url.trim_end_matches('/'),
        args.dataset
    );
    // a refusal (credential, dataset) answered before the body is sent can break the upload's
    // pipe: ask once first, to say why clearly
    if let Err(message) = check_access(&agent, url, token, &args.dataset) {
        return fail(&message);
    }
    let mut all_ok = true;
    for source in sources(&args.files, args.format, &args.read) {
        let Some(source) = source else {
            all_ok = false;
            continue;
        };
        if let Err(message) = send(&agent, &endpoint, token, args, &source) {
            eprintln!("error: {}: {message}", source.path.display());
            all_ok = false;
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn send(
    agent: &ureq::Agent,
    endpoint: &str,
    token: Option<&str>,
    args: &ImportArgs,
    source: &Source<'_>,
) -> Result<(), String> {
    let (tracked, bar) = open_tracked(source.path)?;
    let started = Instant::now();
    let mut request = agent
        .post(endpoint)
        .set("Content-Type", source.format.media_type())
        .query("on_conflict", &args.on_conflict)
        .query("on_error", &args.on_error);
    for (name, value) in args.read.pairs() {
        request = request.query(&name, &value);
    }
    let sent = authorized(request, token).send(BufReader::with_capacity(1 << 20, tracked));
    bar.finish_and_clear();
    let (status, body) = answer(sent, endpoint)?;
    if status >= 300 {
        return Err(describe(status, &body));
    }
    let count = |key: &str| body[key].as_u64().unwrap_or(0);
    let summary = Summary {
        rows: ["inserted", "updated", "skipped", "rejected"]
            .map(count)
            .iter()
            .sum(),
        inserted: count("inserted"),
        updated: count("updated"),
        skipped: count("skipped"),
        rejected: count("rejected"),
        violations: violations(&body),
    };
    print_summary(source.path, started, &summary);
    Ok(())
}

/// Whether the server answers for the dataset with this credential.
fn check_access(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    dataset: &str,
) -> Result<(), String> {
    let endpoint = format!("{}/v1/datasets/{dataset}", url.trim_end_matches('/'));
    let (status, problem) = answer(authorized(agent.get(&endpoint), token).call(), url)?;
    if status >= 300 {
        return Err(describe(status, &problem));
    }
    Ok(())
}

/// `request` with the credential, when there is one.
fn authorized(request: ureq::Request, token: Option<&str>) -> ureq::Request {
    match token {
        Some(token) => request.set("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

/// An answer's status and JSON body (null when it has none); `Err` when `target` was not reached.
fn answer(
    result: Result<ureq::Response, ureq::Error>,
    target: &str,
) -> Result<(u16, Value), String> {
    let (status, text) = match result {
        Ok(response) => (response.status(), response.into_string()),
        Err(ureq::Error::Status(status, response)) => (status, response.into_string()),
        Err(e) => return Err(format!("cannot reach {target}: {e}")),
    };
    let body = text
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    Ok((status, body))
}

fn violations(body: &Value) -> Vec<String> {
    let Some(errors) = body["errors"].as_array() else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| {
            violation_line(
                e["row"].as_u64().unwrap_or(0),
                e["field"].as_str(),
                e["message"].as_str().unwrap_or_default(),
                e["code"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// A problem answer as text: its status, title and detail, then its rows or keys.
fn describe(status: u16, problem: &Value) -> String {
    let text = |key: &str| problem[key].as_str().unwrap_or_default().to_owned();
    let mut lines = vec![format!("{status} {}: {}", text("title"), text("detail"))];
    lines.extend(violations(problem));
    if let Some(conflicts) = problem["conflicts"].as_array() {
        lines.extend(
            conflicts
                .iter()
                .map(|c| conflict_line(&c["key"], c["reason"].as_str().unwrap_or_default())),
        );
    }
    lines.join("\n  ")
}
