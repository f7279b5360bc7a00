//! Reads dataset schemas from the `*.toml` files of a directory. Each file holds one or more
//! `[[datasets]]`; every problem (syntax, unknown key, wrong kind of value, and every rule the
//! domain checks) is reported with its file and line, all at once.

use std::path::{Path, PathBuf};

use dataforge_domain::schema::{
    Catalog, DatasetDraft, FieldDraft, Located, PartitionDraft, SchemaProblem, build_catalog,
};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Loads and checks every schema file in `dir`.
pub fn load_catalog(dir: &Path) -> Result<Catalog, Vec<SchemaProblem>> {
    let files = schema_files(dir)?;
    let mut texts = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let origin = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => texts.push((origin, text)),
            Err(e) => problems.push(problem(
                &origin,
                None,
                format!("cannot read the file: {e}"),
                None,
            )),
        }
    }
    match parse_catalog(&texts) {
        Ok(catalog) if problems.is_empty() => Ok(catalog),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// Checks schema file texts (each with the name problems cite) as one catalog.
pub fn parse_catalog(files: &[(String, String)]) -> Result<Catalog, Vec<SchemaProblem>> {
    let mut drafts = Vec::new();
    let mut problems = Vec::new();
    for (origin, text) in files {
        let mut reader = FileReader {
            origin,
            text,
            problems: &mut problems,
        };
        drafts.extend(reader.read());
    }
    match build_catalog(&drafts) {
        Ok(catalog) if problems.is_empty() => Ok(catalog),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn schema_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<SchemaProblem>> {
    let origin = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![problem(
            &origin,
            None,
            format!("cannot read the schema directory: {e}"),
            Some("pass the directory with `--schemas DIR`".into()),
        )]
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![problem(
            &origin,
            None,
            "no schema files (*.toml) in the directory".into(),
            Some("add a file such as `schemas/my_dataset.toml` declaring `[[datasets]]`".into()),
        )]);
    }
    Ok(files)
}

fn problem(
    origin: &str,
    line: Option<usize>,
    message: String,
    hint: Option<String>,
) -> SchemaProblem {
    SchemaProblem {
        origin: origin.to_owned(),
        line,
        message,
        hint,
    }
}

const DATASET_KEYS: &[&str] = &[
    "name",
    "description",
    "primary_key",
    "indexes",
    "cluster_by",
    "partition_by",
    "timezone",
    "fields",
];
const FIELD_KEYS: &[&str] = &[
    "name",
    "type",
    "required",
    "default",
    "description",
    "min",
    "max",
    "one_of",
    "pattern",
    "max_length",
    "renamed_from",
    "timezone",
    "epoch",
];

/// Walks one file's TOML tree into drafts, recording what does not fit.
struct FileReader<'a> {
    origin: &'a str,
    text: &'a str,
    problems: &'a mut Vec<SchemaProblem>,
}

impl FileReader<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> Option<usize> {
        let end = span.start.min(self.text.len());
        Some(
            self.text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        )
    }

    fn report(&mut self, span: std::ops::Range<usize>, message: String, hint: Option<String>) {
        let line = self.line(span);
        self.problems
            .push(problem(self.origin, line, message, hint));
    }

    fn read(&mut self) -> Vec<DatasetDraft> {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                self.report(span, format!("TOML syntax: {}", e.message().trim()), None);
            }
            return Vec::new();
        }
        let mut drafts = Vec::new();
        for (key, value) in root.get_ref() {
            if key.get_ref() != "datasets" {
                self.report(
                    key.span(),
                    format!("unknown top-level key `{}`", key.get_ref()),
                    Some("declare each dataset in a `[[datasets]]` table".into()),
                );
                continue;
            }
            let Some(items) = self.array(value, "datasets") else {
                continue;
            };
            for item in items {
                if let Some(table) = self.table(item, "a dataset") {
                    drafts.push(self.dataset(item.span(), table));
                }
            }
        }
        if drafts.is_empty() && self.problems.is_empty() {
            self.report(
                0..0,
                "the file declares no dataset".into(),
                Some("add a `[[datasets]]` table".into()),
            );
        }
        drafts
    }

    fn dataset(&mut self, span: std::ops::Range<usize>, table: &DeTable<'_>) -> DatasetDraft {
        let mut draft = DatasetDraft {
            origin: self.origin.to_owned(),
            line: self.line(span),
            name: None,
            description: None,
            fields: Vec::new(),
            primary_key: None,
            indexes: Vec::new(),
            cluster_by: None,
            partition_by: None,
            timezone: None,
        };
        for (key, value) in table {
            let line = self.line(value.span());
            match key.get_ref().as_ref() {
                "name" => draft.name = self.string(value, "name").map(|s| Located::new(s, line)),
                "description" => draft.description = self.string(value, "description"),
                "timezone" => {
                    draft.timezone = self
                        .string(value, "timezone")
                        .map(|s| Located::new(s, line))
                }
                "primary_key" => {
                    draft.primary_key = self
                        .strings(value, "primary_key")
                        .map(|k| Located::new(k, line))
                }
                "cluster_by" => {
                    draft.cluster_by = self
                        .strings(value, "cluster_by")
                        .map(|k| Located::new(k, line))
                }
                "partition_by" => {
                    draft.partition_by = self.partition(value).map(|p| Located::new(p, line))
                }
                "indexes" => {
                    for index in self.array(value, "indexes").unwrap_or_default() {
                        if let Some(fields) = self.strings(index, "an index") {
                            draft
                                .indexes
                                .push(Located::new(fields, self.line(index.span())));
                        }
                    }
                }
                "fields" => {
                    for item in self.array(value, "fields").unwrap_or_default() {
                        if let Some(field) = self.table(item, "a field") {
                            draft.fields.push(self.field(item.span(), field));
                        }
                    }
                }
                other => self.report(
                    key.span(),
                    format!("unknown key `{other}` in a dataset"),
                    Some(format!("dataset keys are: {}", DATASET_KEYS.join(", "))),
                ),
            }
        }
        draft
    }

    fn field(&mut self, span: std::ops::Range<usize>, table: &DeTable<'_>) -> FieldDraft {
        let mut draft = FieldDraft {
            line: self.line(span),
            ..FieldDraft::default()
        };
        for (key, value) in table {
            let line = self.line(value.span());
            let json = |reader: &mut Self| reader.json(value).map(|j| Located::new(j, line));
            match key.get_ref().as_ref() {
                "name" => draft.name = self.string(value, "name").map(|s| Located::new(s, line)),
                "type" => {
                    draft.field_type = self.string(value, "type").map(|s| Located::new(s, line))
                }
                "required" => match value.get_ref() {
                    DeValue::Boolean(b) => draft.required = Some(Located::new(*b, line)),
                    _ => self.report(
                        value.span(),
                        "`required` must be true or false".into(),
                        None,
                    ),
                },
                "default" => draft.default = json(self),
                "description" => draft.description = self.string(value, "description"),
                "min" => draft.min = json(self),
                "max" => draft.max = json(self),
                "one_of" => {
                    draft.one_of = match json(self) {
                        Some(Located {
                            value: serde_json::Value::Array(items),
                            line,
                        }) => Some(Located::new(items, line)),
                        Some(_) => {
                            self.report(
                                value.span(),
                                "`one_of` must be an array of allowed values".into(),
                                None,
                            );
                            None
                        }
                        None => None,
                    }
                }
                "pattern" => {
                    draft.pattern = self.string(value, "pattern").map(|s| Located::new(s, line))
                }
                "timezone" => {
                    draft.timezone = self
                        .string(value, "timezone")
                        .map(|s| Located::new(s, line))
                }
                "epoch" => draft.epoch = self.string(value, "epoch").map(|s| Located::new(s, line)),
                "renamed_from" => {
                    draft.renamed_from = self
                        .string(value, "renamed_from")
                        .map(|s| Located::new(s, line))
                }
                "max_length" => match value.get_ref() {
                    DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                        Ok(n) => draft.max_length = Some(Located::new(n, line)),
                        Err(_) => {
                            self.report(value.span(), "`max_length` is out of range".into(), None)
                        }
                    },
                    _ => self.report(value.span(), "`max_length` must be an integer".into(), None),
                },
                other => self.report(
                    key.span(),
                    format!("unknown key `{other}` in a field"),
                    Some(format!("field keys are: {}", FIELD_KEYS.join(", "))),
                ),
            }
        }
        draft
    }

    fn string(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.report(value.span(), format!("`{what}` must be a string"), None);
                None
            }
        }
    }

    /// `{ field = "...", interval = "..." }`.
    fn partition(&mut self, value: &Spanned<DeValue<'_>>) -> Option<PartitionDraft> {
        let table = self.table(value, "`partition_by`")?;
        let mut draft = PartitionDraft::default();
        for (key, item) in table {
            match key.get_ref().as_ref() {
                "field" => draft.field = self.string(item, "partition_by.field"),
                "interval" => draft.interval = self.string(item, "partition_by.interval"),
                other => self.report(
                    key.span(),
                    format!("unknown key `{other}` in partition_by"),
                    Some("partition_by takes `field` and `interval`".into()),
                ),
            }
        }
        Some(draft)
    }

    fn strings(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<Vec<String>> {
        let items = self.array(value, what)?;
        let mut out = Vec::new();
        for item in items {
            out.push(self.string(item, &format!("each item of {what}"))?);
        }
        Some(out)
    }

    fn array<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'v [Spanned<DeValue<'i>>]> {
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            _ => {
                self.report(value.span(), format!("`{what}` must be an array"), None);
                None
            }
        }
    }

    fn table<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.report(value.span(), format!("expected {what} as a table"), None);
                None
            }
        }
    }

    /// Converts a TOML value to JSON, the form the domain reads defaults and bounds from.
    fn json(&mut self, value: &Spanned<DeValue<'_>>) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match value.get_ref() {
            DeValue::String(s) => J::String(s.to_string()),
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => J::from(n),
                Err(_) => {
                    self.report(
                        value.span(),
                        format!("integer {i} does not fit in 64 bits"),
                        None,
                    );
                    return None;
                }
            },
            DeValue::Float(f) => match f
                .as_str()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => J::Number(n),
                None => {
                    self.report(
                        value.span(),
                        format!("float {f} is not a finite number"),
                        None,
                    );
                    return None;
                }
            },
            DeValue::Array(items) => J::Array(
                items
                    .iter()
                    .map(|item| self.json(item))
                    .collect::<Option<Vec<_>>>()?,
            ),
            DeValue::Table(table) => {
                let mut object = serde_json::Map::new();
                for (key, item) in table {
                    object.insert(key.get_ref().to_string(), self.json(item)?);
                }
                J::Object(object)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<Catalog, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        load_catalog(dir.path()).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| {
                    let file = Path::new(&p.origin)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("{file}:{}: {}", p.line.unwrap_or(0), p.message)
                })
                .collect()
        })
    }

    const GOOD: &str = r#"
[[datasets]]
name = "sensors"
description = "Readings"
primary_key = ["sensor_id", "taken_at"]
indexes = [["taken_at"]]
cluster_by = ["kind", "taken_at"]

[[datasets.fields]]
name = "sensor_id"
type = "string"
pattern = "^S[0-9]+$"
max_length = 10

[[datasets.fields]]
name = "taken_at"
type = "timestamp"
min = 2000-01-01T00:00:00Z

[[datasets.fields]]
name = "level"
type = "float"
min = 0
max = 1.5e3
default = 0.0

[[datasets.fields]]
name = "kind"
type = "string"
one_of = ["a", "b"]

[[datasets]]
name = "sites"
primary_key = ["id"]
fields = [{ name = "id", type = "integer" }, { name = "meta", type = "json" }]
"#;

    #[test]
    fn loads_several_datasets_from_one_file() {
        let catalog = load(&[("a.toml", GOOD)]).unwrap();
        assert_eq!(catalog.len(), 2);
        let sensors = catalog.get("sensors").unwrap();
        assert_eq!(sensors.fields.len(), 4);
        assert_eq!(sensors.primary_key, vec![0, 1]);
        assert_eq!(sensors.indexes, vec![vec![1]]);
        assert_eq!(sensors.cluster_by, vec![3, 1]);
        assert!(sensors.fields[0].constraints.pattern.is_some());
        assert_eq!(
            catalog.get("sites").unwrap().cluster_by,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn cluster_by_names_ordered_fields() {
        let text = r#"[[datasets]]
name = "c"
primary_key = ["id"]
cluster_by = ["ghost", "meta"]
fields = [{ name = "id", type = "integer" }, { name = "meta", type = "json" }]
"#;
        let problems = load(&[("c.toml", text)]).unwrap_err();
        for e in [
            "c.toml:4: cluster_by field `ghost` is not a field of c",
            "c.toml:4: cluster_by field `meta` has type json",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing `{e}` in {problems:#?}"
            );
        }
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let text = r#"[[datasets]]
name = "bad"
primary_key = ["id", "ghost"]
colour = "red"

[[datasets.fields]]
name = "id"
type = "integer"
min = 5
max = 1

[[datasets.fields]]
name = "id"
type = "string"

[[datasets.fields]]
name = "measured"
type = "datetime"

[[datasets.fields]]
name = "code"
type = "string"
pattern = "(unclosed"
"#;
        let problems = load(&[("bad.toml", text)]).unwrap_err();
        let expect = [
            "bad.toml:4: unknown key `colour` in a dataset",
            "bad.toml:13: duplicate field `id` in bad",
            "bad.toml:18: field `measured` has unknown type `datetime`",
            "bad.toml:9: field `id`: `min` (5) is greater than `max` (1)",
            "bad.toml:23: field `code`: invalid regex `(unclosed`",
            // reported in the same run, although other problems would stop the dataset first
            "bad.toml:3: primary key field `ghost` is not a field of bad",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing `{e}` in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn reports_missing_key_fields_and_syntax_errors() {
        let missing = "[[datasets]]\nname = \"x\"\nprimary_key = [\"nope\"]\nfields = [{ name = \"id\", type = \"integer\" }]\n";
        assert_eq!(
            load(&[("m.toml", missing)]).unwrap_err(),
            vec!["m.toml:3: primary key field `nope` is not a field of x"]
        );
        let broken = load(&[("s.toml", "[[datasets]]\nname = \n")]).unwrap_err();
        assert!(broken[0].starts_with("s.toml:2: TOML syntax"), "{broken:?}");
        let kinds =
            load(&[("k.toml", "[[datasets]]\nname = 3\nprimary_key = \"id\"\n")]).unwrap_err();
        assert!(
            kinds.contains(&"k.toml:2: `name` must be a string".to_string()),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&"k.toml:3: `primary_key` must be an array".to_string()),
            "{kinds:?}"
        );
    }

    #[test]
    fn duplicate_datasets_across_files_and_empty_directories() {
        let one = "[[datasets]]\nname = \"x\"\nprimary_key = [\"id\"]\nfields = [{ name = \"id\", type = \"integer\" }]\n";
        let problems = load(&[("a.toml", one), ("b.toml", one)]).unwrap_err();
        assert_eq!(problems, vec!["b.toml:2: dataset `x` is declared twice"]);
        let empty = load(&[]).unwrap_err();
        assert!(empty[0].contains("no schema files"), "{empty:?}");
    }
}
