//! The options a CSV body may be read with: `delimiter` and `null`. Each is checked before a byte
//! of the body is read, so a bad value is the client's error, naming the option, and writes nothing.

use dataforge_domain::records::ReadOptions;

use crate::table::ReadOption;

/// The delimiters taken, by the names they may be given as.
const DELIMITERS: &[(&str, u8)] = &[
    (",", b','),
    (";", b';'),
    ("\t", b'\t'),
    ("tab", b'\t'),
    ("|", b'|'),
];

/// Longest null spelling taken.
const MAX_NULL_CHARS: usize = 64;

pub(crate) static OPTIONS: &[ReadOption] = &[
    ReadOption {
        name: "delimiter",
        description: "The byte between cells of a CSV body: `,` (the default), `;`, `|` or a tab (`tab` or `%09`).",
        values: &[",", ";", "tab", "|"],
        apply: delimiter,
    },
    ReadOption {
        name: "null",
        description: "A CSV cell spelled so is null (e.g. `NA`, `NULL`, `\\N`); an empty cell is always null.",
        values: &[],
        apply: null,
    },
];

fn delimiter(value: &str, options: &mut ReadOptions) -> Result<(), String> {
    let found = DELIMITERS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value));
    let Some(&(_, byte)) = found else {
        return Err(format!(
            "must be `,`, `;`, `|` or a tab (`tab`), found `{}`",
            value.escape_debug()
        ));
    };
    if options
        .null
        .as_deref()
        .is_some_and(|n| n.as_bytes().contains(&byte))
    {
        return Err("the null spelling contains the delimiter".to_owned());
    }
    options.delimiter = byte;
    Ok(())
}

fn null(value: &str, options: &mut ReadOptions) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty (an empty cell is null already)".to_owned());
    }
    if value.chars().count() > MAX_NULL_CHARS {
        return Err(format!("must be at most {MAX_NULL_CHARS} characters"));
    }
    if value
        .bytes()
        .any(|b| b == options.delimiter || matches!(b, b'"' | b'\r' | b'\n'))
    {
        return Err(format!(
            "`{}` cannot be a cell: it holds the delimiter, a quote or a line break",
            value.escape_debug()
        ));
    }
    options.null = Some(value.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{ReadOptionError, by_name, read_options};

    fn parse(pairs: &[(&str, &str)]) -> Result<ReadOptions, ReadOptionError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        read_options(by_name("csv").unwrap(), &pairs)
    }

    #[test]
    fn delimiters_and_null_spellings_are_read() {
        for (given, byte) in [
            (",", b','),
            (";", b';'),
            ("\t", b'\t'),
            ("TAB", b'\t'),
            ("|", b'|'),
        ] {
            assert_eq!(parse(&[("delimiter", given)]).unwrap().delimiter, byte);
        }
        let both = parse(&[("delimiter", ";"), ("null", "NA")]).unwrap();
        assert_eq!((both.delimiter, both.null.as_deref()), (b';', Some("NA")));
        assert_eq!(parse(&[]).unwrap(), ReadOptions::default());
    }

    #[test]
    fn bad_values_name_their_option() {
        for (pairs, parameter) in [
            (&[("delimiter", ":")][..], "delimiter"),
            (&[("delimiter", ",,")][..], "delimiter"),
            (&[("null", "")][..], "null"),
            (&[("null", "a,b")][..], "null"),
            (&[("null", "a;b"), ("delimiter", ";")][..], "delimiter"),
            (&[("delimiter", ";"), ("null", "a;b")][..], "null"),
            (&[("null", "NA"), ("null", "NULL")][..], "null"),
        ] {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.parameter, parameter, "{pairs:?}: {}", e.message);
        }
    }
}
