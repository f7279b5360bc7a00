//! JSON bodies: one object or an array of objects, read with serde straight into the column
//! builders. Values the schema does not take are still parsed (into a throwaway value) so that
//! invalid UTF-8 anywhere in the body is caught.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use dataforge_domain::records::{BodyError, DecodedBatch, Halt, ReadOptions};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{FieldType, Value, ValueError};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::columns::{ColumnBuilder, RowDecoder};

/// A value read only to be skipped; parsing it checks its syntax and UTF-8.
type Skipped = serde_json::Value;

/// Largest non-object, non-array body read to tell a syntax error from a wrong shape.
const SCALAR_PEEK_LIMIT: u64 = 1 << 20;

/// Decodes a JSON body, handing over batches of `batch_rows` records.
pub(crate) fn decode(
    schema: &DatasetSchema,
    _options: &ReadOptions,
    body: &mut dyn Read,
    batch_rows: usize,
    sink: &mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
) -> Result<u64, BodyError> {
    let mut reader = BufReader::with_capacity(256 * 1024, body);
    match first_byte(&mut reader)? {
        Some(b'{' | b'[') => {}
        _ => {
            let mut rest = Vec::new();
            reader
                .take(SCALAR_PEEK_LIMIT)
                .read_to_end(&mut rest)
                .map_err(|e| BodyError::Io(e.to_string()))?;
            return Err(match serde_json::from_slice::<Skipped>(&rest) {
                Ok(_) => BodyError::Shape,
                Err(e) => BodyError::Syntax(e.to_string()),
            });
        }
    }
    let mut decoder = RowDecoder::new(schema, batch_rows);
    let mut stopped = None;
    let mut json = serde_json::Deserializer::from_reader(reader);
    let read = Body {
        decoder: &mut decoder,
        sink,
        stopped: &mut stopped,
    }
    .deserialize(&mut json)
    .and_then(|()| json.end());
    if let Some(reason) = stopped {
        return Err(reason);
    }
    read.map_err(|e| {
        if e.is_io() {
            BodyError::Io(e.to_string())
        } else {
            BodyError::Syntax(e.to_string())
        }
    })?;
    decoder.finish(sink)
}

/// Skips leading whitespace and peeks at the first byte of the body.
fn first_byte(reader: &mut BufReader<&mut dyn Read>) -> Result<Option<u8>, BodyError> {
    loop {
        let buffer = reader
            .fill_buf()
            .map_err(|e| BodyError::Io(e.to_string()))?;
        if buffer.is_empty() {
            return Ok(None);
        }
        match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let byte = buffer[i];
                reader.consume(i);
                return Ok(Some(byte));
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

/// Records a value that is not an object as a `not_an_object` violation of its record.
pub(crate) fn not_an_object(decoder: &mut RowDecoder<'_>) {
    decoder.reject_row(
        decoder.rows,
        "not_an_object",
        "each record must be a JSON object".to_owned(),
    );
    decoder.end_row();
}

/// The whole body: one record or an array of records, flushed to the sink batch by batch.
struct Body<'d, 's, 'k> {
    decoder: &'d mut RowDecoder<'s>,
    sink: &'k mut dyn FnMut(DecodedBatch) -> Result<(), Halt>,
    /// Why decoding stopped, when it was not the JSON's fault.
    stopped: &'d mut Option<BodyError>,
}

impl<'de> DeserializeSeed<'de> for Body<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Record(self.decoder).visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self.decoder))?.is_some() {
            if self.decoder.is_full()
                && let Err(e) = self.decoder.flush(self.sink)
            {
                *self.stopped = Some(e);
                return Err(de::Error::custom("decoding stopped"));
            }
        }
        Ok(())
    }
}

/// One element of the body's array; anything but an object is a `not_an_object` violation.
pub(crate) struct Record<'d, 's>(pub(crate) &'d mut RowDecoder<'s>);

impl<'de> DeserializeSeed<'de> for Record<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.0;
        while let Some(key) = map.next_key_seed(FieldKey(decoder.schema))? {
            match key {
                Key::Known(col) if decoder.present[col] => {
                    map.next_value::<Skipped>()?;
                    let name = decoder.schema.fields[col].name.clone();
                    let message = format!("`{name}` appears more than once in the record");
                    decoder.report(Some(name), "duplicate_field", message);
                }
                Key::Known(col) => {
                    let ty = decoder.schema.fields[col].field_type;
                    let column = &mut decoder.columns[col];
                    let cell = map.next_value_seed(Cell { column, ty })?;
                    // marked only once the value is in its column: a record cut short by a syntax
                    // error is completed with defaults, so columns stay aligned
                    decoder.present[col] = true;
                    if let Err(e) = cell {
                        decoder.reject_cell(col, e);
                    }
                }
                Key::Unknown(name) => {
                    map.next_value::<Skipped>()?;
                    let message = format!(
                        "`{name}` is not a field of {}; fields are: {}",
                        decoder.schema.name,
                        decoder.schema.field_names()
                    );
                    decoder.report(Some(name), "unknown_field", message);
                }
            }
        }
        decoder.end_row();
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        not_an_object(self.0);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        not_an_object(self.0);
        Ok(())
    }
}

/// A record's key, resolved to a field position without copying known names.
enum Key {
    Known(usize),
    Unknown(String),
}

struct FieldKey<'s>(&'s DatasetSchema);

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match self.0.field_index(name) {
            Some(col) => Key::Known(col),
            None => Key::Unknown(name.to_owned()),
        })
    }
}

/// One value, appended to its column; a value that does not fit the type is an `Err` inside `Ok`,
/// so reading goes on and every problem is reported.
struct Cell<'c> {
    column: &'c mut ColumnBuilder,
    ty: FieldType,
}

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = Result<(), ValueError>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.ty == FieldType::Json {
            // the value's text as sent: parsed, a large integer would become a float
            let json = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
            self.column.append_raw_json(json.get());
            return Ok(Ok(()));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = Result<(), ValueError>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} value", self.ty)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.column.append_null();
        Ok(Ok(()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match (&mut *self.column, self.ty) {
            (ColumnBuilder::Text(b), FieldType::String) => {
                b.append_value(v);
                Ok(())
            }
            (_, FieldType::Timestamp) => self.column.append_timestamp_text(v),
            (_, FieldType::Date) => match Value::parse_text(self.ty, v) {
                Ok(value) => {
                    self.column.append(&value);
                    Ok(())
                }
                Err(e) => {
                    self.column.append_null();
                    Err(e)
                }
            },
            _ => self
                .column
                .append_json(self.ty, &serde_json::Value::String(v.to_owned())),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Array(Vec::new())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(self
            .column
            .append_json(self.ty, &serde_json::Value::Object(serde_json::Map::new())))
    }
}
