//! Keyset pagination cursors: an opaque token holding the sort-key values of the last row served,
//! so the next page starts strictly after it, however the table changes in between.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{QueryError, SortKey};
use crate::schema::DatasetSchema;
use crate::value::Value;

/// The position after which the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub values: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// The order the cursor was made for, as text.
    o: String,
    /// The sort-key values of the last row.
    k: Vec<serde_json::Value>,
}

/// The order as canonical text, e.g. `production_period.desc,field_code.asc`.
pub(crate) fn order_text(schema: &DatasetSchema, order: &[SortKey]) -> String {
    order
        .iter()
        .map(|k| {
            format!(
                "{}.{}",
                schema.fields[k.field].name,
                if k.descending { "desc" } else { "asc" }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Cursor {
    /// The token for a page whose last row has these sort-key values.
    pub fn encode(schema: &DatasetSchema, order: &[SortKey], values: &[Value]) -> String {
        let token = Token {
            o: order_text(schema, order),
            k: values.iter().map(Value::to_json).collect(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }

    /// Reads a token made by [`Cursor::encode`] for the same order.
    pub fn decode(
        schema: &DatasetSchema,
        order: &[SortKey],
        token: &str,
    ) -> Result<Cursor, QueryError> {
        let bad = |why: &str| {
            QueryError::new(
                "cursor",
                format!(
                    "invalid cursor: {why}; pass the `next_cursor` of the previous page unchanged"
                ),
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| bad("not a cursor token"))?;
        let token: Token = serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor token"))?;
        if token.o != order_text(schema, order) {
            return Err(QueryError::new(
                "cursor",
                format!(
                    "the cursor was made for order `{}`, but this request orders by `{}`",
                    token.o,
                    order_text(schema, order)
                ),
            ));
        }
        if token.k.len() != order.len() {
            return Err(bad("wrong number of values"));
        }
        let values = order
            .iter()
            .zip(&token.k)
            .map(|(key, json)| Value::from_json(schema.fields[key.field].field_type, json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("a value does not fit its field"))?;
        Ok(Cursor { values })
    }
}
