//! Dataset and field names: checked once when schemas load, so that no name can ever change the
//! meaning of generated SQL and every name is safe in a URL path or a query parameter.

/// The longest name accepted; PostgreSQL truncates identifiers past 63 bytes.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// SQL keywords (the reserved words of SQL:2016, PostgreSQL and DuckDB) that may not name a dataset
/// or a field. Kept sorted for binary search.
const SQL_KEYWORDS: &[&str] = &[
    "all",
    "alter",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "at",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "by",
    "call",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "cursor",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "delete",
    "desc",
    "describe",
    "distinct",
    "do",
    "double",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "insert",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "nchar",
    "none",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "pivot",
    "placing",
    "position",
    "precision",
    "primary",
    "qualify",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "summarize",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "unpivot",
    "update",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// Names the HTTP API gives a meaning of its own in query strings; a field may not take them.
pub const RESERVED_PARAMETERS: &[&str] = &[
    "select",
    "order",
    "limit",
    "cursor",
    "format",
    "exact",
    "group_by",
    "metrics",
    "bucket",
    "having",
    "all",
    "max_affected",
];

/// Why a name was refused, phrased for a person fixing a schema file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("name is empty")]
    Empty,
    #[error("name `{0}` is longer than {MAX_IDENTIFIER_LEN} characters")]
    TooLong(String),
    #[error("name `{0}` is not lowercase snake_case (a-z, 0-9 and _, starting with a letter)")]
    NotSnakeCase(String),
    #[error("name `{0}` is an SQL keyword")]
    Keyword(String),
    #[error("name `{0}` is reserved by the HTTP API as a query parameter")]
    Reserved(String),
}

/// Checks a dataset or field name: lowercase snake_case, at most 63 characters, not an SQL keyword.
pub fn check_identifier(name: &str) -> Result<(), IdentifierError> {
    check_shape(name)?;
    if SQL_KEYWORDS.binary_search(&name).is_ok() {
        return Err(IdentifierError::Keyword(name.to_owned()));
    }
    Ok(())
}

/// Lowercase snake_case of at most 63 characters.
fn check_shape(name: &str) -> Result<(), IdentifierError> {
    if name.is_empty() {
        return Err(IdentifierError::Empty);
    }
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(IdentifierError::TooLong(name.to_owned()));
    }
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_with_letter || !rest_ok {
        return Err(IdentifierError::NotSnakeCase(name.to_owned()));
    }
    Ok(())
}

/// Checks a field name: snake_case and not one of the API's query parameters. SQL keywords are
/// fine (`time`, `user`, `end`: real files have them), since every column name is quoted in SQL.
pub fn check_field_name(name: &str) -> Result<(), IdentifierError> {
    check_shape(name)?;
    if RESERVED_PARAMETERS.contains(&name) {
        return Err(IdentifierError::Reserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        assert!(SQL_KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn accepts_snake_case() {
        assert_eq!(check_identifier("well_production_2"), Ok(()));
        assert_eq!(check_identifier(&"a".repeat(63)), Ok(()));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(check_identifier(""), Err(IdentifierError::Empty));
        assert!(matches!(
            check_identifier(&"a".repeat(64)),
            Err(IdentifierError::TooLong(_))
        ));
        for bad in ["Well", "2wells", "_x", "a-b", "a b", "a\"b", "é"] {
            assert!(
                matches!(check_identifier(bad), Err(IdentifierError::NotSnakeCase(_))),
                "{bad}"
            );
        }
        assert_eq!(
            check_identifier("select"),
            Err(IdentifierError::Keyword("select".into()))
        );
        assert_eq!(
            check_field_name("format"),
            Err(IdentifierError::Reserved("format".into()))
        );
        assert!(matches!(
            check_field_name("Time"),
            Err(IdentifierError::NotSnakeCase(_))
        ));
    }

    #[test]
    fn field_names_may_be_sql_keywords() {
        for name in ["time", "timestamp", "user", "from", "to", "end", "position"] {
            assert_eq!(check_field_name(name), Ok(()), "{name}");
        }
    }
}
