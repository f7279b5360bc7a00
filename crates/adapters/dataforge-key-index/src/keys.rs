//! Keys are stored in arrow-row's order-preserving encoding, so that LMDB's byte order is the key
//! order: neighbouring keys share blocks and pages, and ranges of keys are ranges of bytes.

use arrow_array::ArrayRef;
use arrow_row::{RowConverter, SortField};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;

/// Encodes key columns as order-preserving bytes.
pub struct KeyEncoder(RowConverter);

impl KeyEncoder {
    pub fn new(schema: &DatasetSchema) -> Result<Self, StoreError> {
        let fields = schema
            .key_fields()
            .map(|f| SortField::new(f.field_type.arrow_type()))
            .collect();
        RowConverter::new(fields)
            .map(KeyEncoder)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// The encoded key of every row of `columns` (the key columns, in key order).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .0
            .convert_columns(columns)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(rows.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// Encoded keys as key columns (in key order).
    pub fn columns(&self, keys: &[impl AsRef<[u8]>]) -> Result<Vec<ArrayRef>, StoreError> {
        let parser = self.0.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k.as_ref())).collect();
        self.0
            .convert_rows(rows)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// The values of encoded keys, for answers that name them.
    pub fn decode(
        &self,
        schema: &DatasetSchema,
        keys: &[&[u8]],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let parser = self.0.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k)).collect();
        let columns = self
            .0
            .convert_rows(rows)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok((0..keys.len())
            .map(|row| {
                schema
                    .key_fields()
                    .zip(&columns)
                    .map(|(f, c)| Value::from_array(f.field_type, c, row))
                    .collect()
            })
            .collect())
    }
}
