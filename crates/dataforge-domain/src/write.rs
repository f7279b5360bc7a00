//! Write options and outcomes: what a write does with invalid records and with keys that are
//! already stored or repeat in the request, and what it reports back.

use crate::query::QueryError;

/// What to do with a record whose key is stored already or repeats within the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictMode {
    /// Refuse the whole request, naming the keys (409).
    #[default]
    Error,
    /// Skip such records and count them; within a request the first one is kept.
    Ignore,
    /// Replace the stored record; within a request the last one wins.
    Upsert,
    /// Update the stored record with the fields the incoming one carries (omitted or null fields
    /// keep their stored values); a record whose key is not stored is inserted. Within a request
    /// the last one wins.
    Merge,
}

/// What to do with records that break the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorMode {
    /// Refuse the whole request, listing the errors (422).
    #[default]
    Reject,
    /// Write the valid records, report and count the invalid ones.
    Skip,
}

/// A write request's options, from its query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    pub on_conflict: ConflictMode,
    pub on_error: ErrorMode,
}

/// What a write did. Records rejected by validation are counted by the caller, not the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// Records stored under a new key.
    pub inserted: u64,
    /// Stored records replaced (upsert) or merged into (merge).
    pub updated: u64,
    /// Records not stored because of their key (ignore), or superseded by a later record with the
    /// same key in the same request (upsert).
    pub skipped: u64,
}

/// Parses `on_conflict=error|ignore|upsert|merge` and `on_error=reject|skip`; any other parameter is refused.
pub fn parse_write_params(params: &[(String, String)]) -> Result<WriteOptions, QueryError> {
    let mut options = WriteOptions::default();
    let mut seen = Vec::new();
    for (name, value) in params {
        if seen.contains(&name.as_str()) {
            return Err(QueryError::new(name, "given more than once"));
        }
        seen.push(name.as_str());
        match name.as_str() {
            "on_conflict" => {
                options.on_conflict = match value.as_str() {
                    "error" => ConflictMode::Error,
                    "ignore" => ConflictMode::Ignore,
                    "upsert" => ConflictMode::Upsert,
                    "merge" => ConflictMode::Merge,
                    other => {
                        return Err(QueryError::new(
                            name,
                            format!(
                                "must be `error`, `ignore`, `upsert` or `merge`, found `{other}`"
                            ),
                        ));
                    }
                }
            }
            "on_error" => {
                options.on_error = match value.as_str() {
                    "reject" => ErrorMode::Reject,
                    "skip" => ErrorMode::Skip,
                    other => {
                        return Err(QueryError::new(
                            name,
                            format!("must be `reject` or `skip`, found `{other}`"),
                        ));
                    }
                }
            }
            other => {
                return Err(QueryError::new(
                    other,
                    format!(
                        "unknown parameter `{other}`; a write takes `on_conflict`, `on_error` and its format's read options (CSV: `delimiter`, `null`)"
                    ),
                ));
            }
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<WriteOptions, QueryError> {
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse_write_params(&params)
    }

    #[test]
    fn defaults_and_every_mode() {
        assert_eq!(parse(&[]).unwrap(), WriteOptions::default());
        let options = parse(&[("on_conflict", "upsert"), ("on_error", "skip")]).unwrap();
        assert_eq!(
            (options.on_conflict, options.on_error),
            (ConflictMode::Upsert, ErrorMode::Skip)
        );
        assert_eq!(
            parse(&[("on_conflict", "ignore")]).unwrap().on_conflict,
            ConflictMode::Ignore
        );
        assert_eq!(
            parse(&[("on_conflict", "merge")]).unwrap().on_conflict,
            ConflictMode::Merge
        );
    }

    #[test]
    fn mistakes_name_the_parameter() {
        assert_eq!(
            parse(&[("on_conflict", "replace")]).unwrap_err().parameter,
            "on_conflict"
        );
        assert_eq!(
            parse(&[("on_error", "ignore")]).unwrap_err().parameter,
            "on_error"
        );
        assert_eq!(parse(&[("mode", "x")]).unwrap_err().parameter, "mode");
        assert_eq!(
            parse(&[("on_error", "skip"), ("on_error", "skip")])
                .unwrap_err()
                .message,
            "given more than once"
        );
    }
}
