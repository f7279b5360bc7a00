//! JSON request documents (queries, changes) read as writes are: a key repeated in one object is
//! refused, where `serde_json::Value` would silently keep the last one, and so is an integer that
//! 64 bits cannot hold, which `serde_json::Value` would silently turn into a float (a record's
//! POST keeps such a number exactly inside a `json` field; these documents cannot).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

/// Parses a whole JSON document, refusing repeated keys at any depth.
pub(crate) fn parse(body: &[u8]) -> Result<Json, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    match wide_integer(body) {
        Some(number) => Err(de::Error::custom(format!(
            "the integer {number} does not fit in 64 bits and would lose digits; send it as a string, or inside a `json` field by POST"
        ))),
        None => Ok(value),
    }
}

/// The first integer literal outside strings that neither `i64` nor `u64` holds.
fn wide_integer(body: &[u8]) -> Option<&str> {
    let (mut at, mut in_string, mut escaped) = (0, false, false);
    while at < body.len() {
        let byte = body[at];
        if in_string {
            (in_string, escaped) = match (escaped, byte) {
                (true, _) => (true, false),
                (false, b'\\') => (true, true),
                (false, b'"') => (false, false),
                _ => (true, false),
            };
            at += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
        } else if byte == b'-' || byte.is_ascii_digit() {
            let end = body[at..]
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(body.len(), |n| at + n);
            let token = std::str::from_utf8(&body[at..end]).unwrap_or_default();
            let integral = !token.contains(['.', 'e', 'E']);
            if integral && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                return Some(token);
            }
            at = end;
            continue;
        }
        at += 1;
    }
    None
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Json;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Json;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key `{key}` appears more than once in an object"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    #[test]
    fn documents_parse_as_serde_json_does() {
        let text = r#"{"filter": {"and": [{"field": "a", "op": "eq", "value": -1.5}]}, "limit": 10, "x": null, "t": true}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(parse(b" [1, \"two\"] ").unwrap(), json!([1, "two"]));
    }

    #[test]
    fn repeated_keys_at_any_depth_and_trailing_text_are_refused() {
        for text in [
            r#"{"limit": 1, "limit": 2}"#,
            r#"{"filter": {"field": "a", "field": "b"}}"#,
            r#"[{"a": 1, "a": 1}]"#,
        ] {
            let refused = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(
                refused.contains("appears more than once"),
                "{text}: {refused}"
            );
        }
        assert!(parse(br#"{"a": 1} {"b": 2}"#).is_err());
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        for text in [
            r#"{"v": 18446744073709551616}"#,
            r#"{"v": {"deep": [-9223372036854775809]}}"#,
        ] {
            let refused = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(
                refused.contains("does not fit in 64 bits"),
                "{text}: {refused}"
            );
        }
        // the limits themselves, floats, and digits inside strings are kept
        let kept = r#"{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1e300, "d": "123456789012345678901234567890 \" 99999999999999999999"}"#;
        assert_eq!(
            parse(kept.as_bytes()).unwrap(),
            serde_json::from_str::<serde_json::Value>(kept).unwrap()
        );
    }
}
