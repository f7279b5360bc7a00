//! The operations of one dataset, with their parameters (each field's filter and its operators),
//! request bodies per content type and answers per format; every error is a problem.

use dataforge_domain::query::{MAX_BUCKET_COUNT, OPERATORS, operators_for};
use dataforge_domain::records::BodyFormat;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::FieldType;
use dataforge_formats::table::{self, Format};
use serde_json::{Map, Value as Json, json};

use super::schemas::{changes_name, field_schema, input_name, record_name, reference, row_name};

/// Media types beside JSON of the formats `formats` (readable or writable ones) of the table.
fn binary_types(formats: impl Iterator<Item = &'static Format>) -> Vec<&'static str> {
    formats
        .filter(|f| f.id() != BodyFormat::JSON)
        .map(|f| f.media_type())
        .collect()
}

/// The read options of every readable format (`delimiter`, `null`), as query parameters of a write.
fn read_option_parameters() -> Vec<Json> {
    table::decodable()
        .flat_map(|f| f.read_options.iter().map(move |o| (f, o)))
        .map(|(format, option)| {
            let schema = if option.values.is_empty() {
                json!({"type": "string", "minLength": 1})
            } else {
                json!({"type": "string", "enum": option.values})
            };
            parameter(
                option.name,
                "query",
                schema,
                &format!(
                    "{} Only for {} bodies ({}).",
                    option.description,
                    format.name,
                    format.media_type()
                ),
            )
        })
        .collect()
}

fn parameter(name: &str, place: &str, schema: Json, description: &str) -> Json {
    json!({"name": name, "in": place, "required": place == "path", "schema": schema, "description": description})
}

/// One filter parameter per field: `name=op.value`.
fn filters(schema: &DatasetSchema) -> Vec<Json> {
    schema
        .fields
        .iter()
        .map(|field| {
            let operators = operators_for(field.field_type);
            parameter(
                &field.name,
                "query",
                json!({"type": "string", "pattern": format!("^({})\\.", operators.join("|"))}),
                &format!(
                    "Filter on `{}` ({}): `operator.value`, operators {}; e.g. `eq.1`, `in.(1,2)`, `is.null`. Several filters are ANDed.",
                    field.name,
                    field.field_type,
                    operator_list(Some(field.field_type))
                ),
            )
        })
        .collect()
}

/// The filter operators that apply to a type (every one for `None`) and their meanings.
fn operator_list(ty: Option<FieldType>) -> String {
    OPERATORS
        .iter()
        .filter(|op| ty.is_none_or(|ty| op.fits(ty).is_ok()))
        .map(|op| format!("`{}` ({})", op.name, op.meaning))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters of an aggregate besides filters and `format`.
fn aggregate_parameters() -> Vec<Json> {
    vec![
        parameter(
            "group_by",
            "query",
            json!({"type": "string"}),
            "Fields to group by, comma-separated.",
        ),
        parameter(
            "metrics",
            "query",
            json!({"type": "string"}),
            "Comma-separated: `count()` (rows), `count(f)` and `count_distinct(f)` (non-null and distinct values), `sum(f)`, `avg(f)`, `median(f)`, `percentile(f,p)` (p from 0 to 1, interpolated) and `stddev(f)` (sample) of integer and float fields, `min(f)` and `max(f)`. Columns are named `count`, `{function}_{field}`, or `p{percent}_{field}` for percentiles (`p90_oil`).",
        ),
        parameter(
            "bucket",
            "query",
            json!({"type": "string"}),
            &format!(
                "Time buckets: `field:unit` or `field:Nunit` with unit `minute` or `hour` (timestamps), `day`, `week`, `month`, `quarter` or `year` and N from 1 to {MAX_BUCKET_COUNT}, e.g. `production_period:15minute`."
            ),
        ),
        parameter(
            "having",
            "query",
            json!({"type": "array", "items": {"type": "string"}}),
            "Conditions on metrics, `metric=operator.value` (the filter operators, e.g. `sum_oil=gt.100`); repeated, all must hold.",
        ),
        parameter(
            "order",
            "query",
            json!({"type": "string"}),
            "Sort by output columns.",
        ),
        parameter(
            "limit",
            "query",
            json!({"type": "integer", "minimum": 1}),
            "Most groups answered; a JSON answer without it holds up to `query.max_limit`.",
        ),
    ]
}

/// The answers of a read: a JSON page, or every row streamed in another format.
fn read_answers(page: Json) -> Json {
    let mut content = Map::new();
    content.insert("application/json".into(), json!({"schema": page}));
    for media in binary_types(table::encodable()) {
        content.insert(
            media.into(),
            json!({"schema": {"type": "string", "format": "binary"}}),
        );
    }
    json!({"200": {"description": "A page (JSON), or every matching row streamed in the format asked for (`Accept` or `format`).", "content": content}})
}

fn format_parameter() -> Json {
    parameter(
        "format",
        "query",
        json!({"enum": table::encodable().map(|f| f.name).collect::<Vec<_>>()}),
        "Answer format (else from `Accept`): json pages, or the whole answer streamed.",
    )
}

fn json_answer(status: &str, description: &str, schema: Json) -> Json {
    json!({status: {"description": description, "content": {"application/json": {"schema": schema}}}})
}

/// An operation: its parameters, body and answers, with the problem answer for every error.
fn operation(
    id: String,
    summary: String,
    parameters: Vec<Json>,
    body: Option<Json>,
    answers: Json,
) -> Json {
    let mut responses = answers.as_object().cloned().unwrap_or_default();
    responses.insert(
        "default".into(),
        json!({"description": "An error: RFC 9457 problem details naming the field, row or parameter at fault.",
               "content": {"application/problem+json": {"schema": reference("problem")}}}),
    );
    let mut op = json!({"operationId": id, "summary": summary, "parameters": parameters, "responses": responses});
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn json_body(schema: Json) -> Json {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// Every path of one dataset.
pub(super) fn dataset_paths(schema: &DatasetSchema) -> Vec<(String, Json)> {
    let name = &schema.name;
    let base = format!("/v1/datasets/{name}");
    let record = reference(&record_name(schema));
    let input = reference(&input_name(schema));
    let changes = reference(&changes_name(schema));
    let page = json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": reference(&row_name(schema))},
        "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page"}}});
    let selection = || {
        let mut params = filters(schema);
        params.push(parameter(
            "all",
            "query",
            json!({"type": "boolean"}),
            "Change every record (no filter needed).",
        ));
        params.push(parameter(
            "max_affected",
            "query",
            json!({"type": "integer", "minimum": 0}),
            "Refuse, changing nothing, past this many records.",
        ));
        params
    };
    let mut listing = filters(schema);
    listing.extend([
        parameter(
            "select",
            "query",
            json!({"type": "string"}),
            "Fields to answer, comma-separated.",
        ),
        parameter(
            "order",
            "query",
            json!({"type": "string"}),
            "Sort keys: `field` or `field.desc`, comma-separated.",
        ),
        parameter(
            "limit",
            "query",
            json!({"type": "integer", "minimum": 1}),
            "Records per page (JSON) or in all (streamed).",
        ),
        parameter(
            "cursor",
            "query",
            json!({"type": "string"}),
            "The `next_cursor` of the previous page.",
        ),
        format_parameter(),
    ]);
    let mut writing = vec![
        parameter(
            "on_conflict",
            "query",
            json!({"enum": ["error", "ignore", "upsert", "merge"]}),
            "What a key already stored or repeated does.",
        ),
        parameter(
            "on_error",
            "query",
            json!({"enum": ["reject", "skip"]}),
            "Whether an invalid record fails the request or is left out.",
        ),
    ];
    writing.extend(read_option_parameters());
    let mut write_content = Map::new();
    write_content.insert(
        "application/json".into(),
        json!({"schema": {"oneOf": [input.clone(), {"type": "array", "items": input}]}}),
    );
    for media in binary_types(table::decodable()) {
        write_content.insert(
            media.into(),
            json!({"schema": {"type": "string", "format": "binary"}}),
        );
    }
    let records = json!({
        "get": operation(format!("list_{name}"), format!("Read {name} records: a page, or all of them streamed"), listing, None, read_answers(page)),
        "post": operation(format!("write_{name}"), format!("Write {name} records (all or nothing; any body format, gzip/zstd accepted)"), writing,
            Some(json!({"required": true, "content": write_content})),
            json_answer("201", "Written", reference("write_summary"))),
        "patch": operation(format!("update_{name}_where"), format!("Update the {name} records the filters select"), selection(), Some(json_body(changes.clone())), json_answer("200", "Updated", reference("updated"))),
        "delete": operation(format!("delete_{name}_where"), format!("Delete the {name} records the filters select"), selection(), None, json_answer("200", "Deleted", reference("deleted"))),
    });
    let key_params: Vec<Json> = schema
        .key_fields()
        .map(|f| {
            parameter(
                &f.name,
                "path",
                field_schema(f, false),
                "Key field, percent-encoded.",
            )
        })
        .collect();
    let key_path = schema
        .key_fields()
        .map(|f| format!("{{{}}}", f.name))
        .collect::<Vec<_>>()
        .join("/");
    let one = json!({
        "parameters": key_params,
        "get": operation(format!("get_{name}"), format!("One {name} record by key"), vec![], None, json_answer("200", "The record", record.clone())),
        "patch": operation(format!("update_{name}"), format!("Update fields of one {name} record"), vec![], Some(json_body(changes)), json_answer("200", "The record as stored", record.clone())),
        "put": operation(format!("replace_{name}"), format!("Replace or create one {name} record"), vec![], Some(json_body(reference(&input_name(schema)))),
            json!({"200": {"description": "Replaced", "content": {"application/json": {"schema": record.clone()}}},
                   "201": {"description": "Created", "content": {"application/json": {"schema": record}}}})),
        "delete": operation(format!("delete_{name}"), format!("Delete one {name} record"), vec![], None, json!({"204": {"description": "Deleted"}})),
    });
    let query_body = json!({"type": "object", "description": format!("A query: `filter` (a tree of `and`, `or`, `not` and field conditions, e.g. {{\"eq\": {{\"field\": 1}}}}, with operators {}), `select`, `order`, `limit`, `cursor`; or an aggregate with `group_by`, `metrics`, `bucket`, `having` (the text of the URL parameters), which answers up to `query.max_limit` groups without `limit`.", operator_list(None)),
        "properties": {"filter": {"type": "object"}, "select": {"type": "array", "items": {"type": "string"}},
            "order": {"type": "array", "items": {"type": "string"}}, "limit": {"type": "integer", "minimum": 1},
            "cursor": {"type": ["string", "null"]}, "group_by": {"type": "array", "items": {"type": "string"}},
            "metrics": {"type": "array", "items": {"type": "string"}}, "bucket": {"type": "array", "items": {"type": "string"}},
            "having": {"type": "array", "items": {"type": "string"}}}});
    let change_body = |set: bool| {
        let mut properties = json!({"filter": {"type": "object"}, "all": {"type": "boolean"}, "max_affected": {"type": "integer", "minimum": 0}});
        if set {
            properties["set"] = reference(&changes_name(schema));
        }
        json!({"type": "object", "properties": properties})
    };
    let mut counting = filters(schema);
    counting.push(parameter(
        "exact",
        "query",
        json!({"type": "boolean"}),
        "`false`: an estimate will do.",
    ));
    let mut grouping = filters(schema);
    grouping.extend(aggregate_parameters());
    grouping.push(format_parameter());
    vec![
        (
            base.clone(),
            json!({"get": operation(format!("describe_{name}"), format!("The {name} schema"), vec![], None, json_answer("200", "The schema", reference("dataset")))}),
        ),
        (format!("{base}/records"), records),
        (format!("{base}/records/{key_path}"), one),
        (
            format!("{base}/count"),
            json!({"get": operation(format!("count_{name}"), format!("Count {name} records"), counting, None, json_answer("200", "The count", reference("count")))}),
        ),
        (
            format!("{base}/aggregate"),
            json!({"get": operation(format!("aggregate_{name}"), format!("Group and summarise {name} records"), grouping, None, read_answers(reference("groups")))}),
        ),
        (
            format!("{base}/query"),
            json!({"post": operation(format!("query_{name}"), format!("Query {name} with a JSON body"), vec![format_parameter()], Some(json_body(query_body)),
            read_answers(json!({"oneOf": [{"type": "object", "required": ["items", "next_cursor"]}, reference("groups")]})))}),
        ),
        (
            format!("{base}/update"),
            json!({"post": operation(format!("update_{name}_by_body"), format!("Update {name} records a filter tree selects"), vec![], Some(json_body(change_body(true))), json_answer("200", "Updated", reference("updated")))}),
        ),
        (
            format!("{base}/delete"),
            json!({"post": operation(format!("delete_{name}_by_body"), format!("Delete {name} records a filter tree selects"), vec![], Some(json_body(change_body(false))), json_answer("200", "Deleted", reference("deleted")))}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use dataforge_domain::testing::wells;

    use super::*;

    /// The write of a dataset as described: its parameters' names and its body's media types.
    fn write_operation() -> (Vec<String>, Vec<String>) {
        let paths = dataset_paths(&wells());
        let (_, records) = paths
            .iter()
            .find(|(path, _)| path.ends_with("/records"))
            .expect("the records path");
        let post = &records["post"];
        let names = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let media = post["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        (names, media)
    }

    #[test]
    fn the_write_lists_the_read_options_and_body_types_of_the_formats_table() {
        let (names, media) = write_operation();
        assert_eq!(names, ["on_conflict", "on_error", "delimiter", "null"]);
        let expected: Vec<&str> = std::iter::once("application/json")
            .chain(binary_types(table::decodable()))
            .collect();
        assert_eq!(media, expected);
        assert!(media.contains(&"text/csv".to_owned()));
    }
}
