//! The OpenAPI document and the Swagger UI: every route of the router's table is documented,
//! and `/docs` is served from files compiled into the binary.

mod common;

use std::collections::BTreeSet;

use common::TestApp;
use registrar::http::docs::document;
use registrar::http::routes;
use serde_json::Value;

/// `(METHOD, path)` pairs of the document, as JSON.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                pairs.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    pairs
}

fn routed() -> BTreeSet<(String, String)> {
    routes::table()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect()
}

#[test]
fn every_route_is_documented() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    let documented = documented(&doc);
    let missing: Vec<_> = routed().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
}

#[test]
fn every_documented_path_is_routed() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    let extra: Vec<_> = documented(&doc).difference(&routed()).cloned().collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

#[test]
fn every_operation_documents_error_envelope() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    let envelope = &doc["components"]["schemas"]["ErrorEnvelope"];
    for field in [
        "error",
        "error_code",
        "message",
        "details",
        "timestamp",
        "path",
        "request_id",
    ] {
        assert!(
            envelope["properties"].get(field).is_some(),
            "ErrorEnvelope lacks {field}"
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let default = &operation["responses"]["default"]["content"]["application/json"];
            assert_eq!(
                default["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
                "{method} {path} has no error response"
            );
        }
    }
}

#[test]
fn request_bodies_are_documented() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    let body = &doc["paths"]["/api/v1/queue/inscripciones/async-by-groups"]["post"]["requestBody"];
    assert_eq!(
        body["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InscripcionCreate"
    );
    let create = &doc["components"]["schemas"]["InscripcionCreate"]["properties"];
    assert!(create.get("grupos").is_some());
}

#[tokio::test]
async fn openapi_json_is_served() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["paths"]["/api/v1/audit"]["get"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn docs_served_from_binary() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/docs/index.html");

    let response = client
        .get(app.url("/docs/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !page.contains(attribute),
            "index.html loads an external asset: {attribute}"
        );
    }

    let (status, initializer) = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(status, 200);
    assert!(initializer.as_str().unwrap().contains("/openapi.json"));
    let response = client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = app.get("/docs/nope.js").await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "HTTP_404");
    app.stop().await;
}

#[test]
fn operation_ids_are_unique() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    let mut seen = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(seen.insert(id.to_owned()), "operationId {id} repeats");
        }
    }
    assert!(seen.len() > 40, "{seen:?}");
}

#[test]
fn enrollment_endpoints_document_the_idempotency_key() {
    let doc = serde_json::to_value(document()).expect("document as JSON");
    for path in [
        "/api/v1/inscripciones",
        "/api/v1/inscripciones/sync",
        "/api/v1/queue/inscripciones/async",
        "/api/v1/queue/inscripciones/async-by-groups",
        "/api/v1/queue/inscripciones/bulk-async",
    ] {
        let parameters = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has no parameters"));
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{path}: {parameters:?}"
        );
    }
}
