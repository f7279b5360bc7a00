//! The API contract: an OpenAPI 3.1 document generated at start from the dataset schemas (each
//! dataset's records, parameters, bodies and answers), shown to each credential with the datasets
//! it may touch; and `/docs`, a page in the binary that renders it and sends requests.

mod paths;
mod schemas;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dataforge_domain::access::Access;
use dataforge_domain::schema::Catalog;
use serde_json::{Map, Value as Json, json};

use crate::auth::Acting;
use crate::handlers::HttpState;

/// The parts of the document, built once.
pub struct Contract {
    /// Everything but the datasets.
    base: Json,
    datasets: Vec<DatasetPart>,
}

/// One dataset's part of the document.
struct DatasetPart {
    name: String,
    paths: Map<String, Json>,
    schemas: Map<String, Json>,
}

impl Contract {
    pub fn new(catalog: &Catalog, auth_required: bool) -> Contract {
        let datasets = catalog
            .iter()
            .map(|schema| DatasetPart {
                name: schema.name.clone(),
                paths: paths::dataset_paths(schema).into_iter().collect(),
                schemas: schemas::record_schemas(schema).into_iter().collect(),
            })
            .collect();
        Contract {
            base: base(auth_required),
            datasets,
        }
    }

    /// The document as `access` sees it: the datasets it holds a permission on.
    pub fn document(&self, access: &Access) -> Json {
        let mut document = self.base.clone();
        for part in self.datasets.iter().filter(|p| access.sees(&p.name)) {
            if let Some(all) = document["paths"].as_object_mut() {
                all.extend(part.paths.clone());
            }
            if let Some(all) = document["components"]["schemas"].as_object_mut() {
                all.extend(part.schemas.clone());
            }
        }
        document
    }
}

fn base(auth_required: bool) -> Json {
    let open = json!([]);
    let schemas: Map<String, Json> = schemas::shared()
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    let problem = json!({"description": "An error", "content": {"application/problem+json": {"schema": schemas::reference("problem")}}});
    let status = |what: &str| json!({"description": what, "content": {"application/json": {"schema": schemas::reference("status")}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dataforge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Schema-driven HTTP API over tabular datasets. Every error is RFC 9457 problem+json; each problem's `type` is a page explaining it (`/problems/{type}`).",
        },
        "security": if auth_required { json!([{"bearer": []}]) } else { json!([{}, {"bearer": []}]) },
        "paths": {
            "/health": {"get": {"operationId": "health", "summary": "Liveness", "security": open,
                "responses": {"200": status("Alive"), "default": problem}}},
            "/health/ready": {"get": {"operationId": "ready", "summary": "Readiness: the database answers and the writer runs", "security": open,
                "responses": {"200": status("Ready"), "default": problem}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (admin on every dataset)",
                "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}, "default": problem}}},
            "/v1/credential": {"get": {"operationId": "credential", "summary": "Who this request acts for, and its grants",
                "responses": {"200": {"description": "The credential", "content": {"application/json": {"schema": schemas::reference("credential")}}}, "default": problem}}},
            "/v1/datasets": {"get": {"operationId": "list_datasets", "summary": "The datasets this credential may touch",
                "responses": {"200": {"description": "Datasets", "content": {"application/json": {"schema": schemas::reference("datasets")}}}, "default": problem}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key (`dataforge keys create`) or a JWT."}},
        },
    })
}

/// `GET /openapi.json`.
pub async fn openapi(Acting(state): Acting) -> Response {
    let document = state.contract.document(state.app.access());
    let mut response = document.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /docs`: the page, from the binary (no network needed).
pub async fn docs(State(_): State<HttpState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("docs.html"),
    )
        .into_response()
}
