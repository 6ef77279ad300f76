//! The JMeter plan in `loadtest/jmeter/registrar.jmx` against the service's OpenAPI document:
//! every HTTP sampler's method and path must be an operation that the document lists, so
//! that the plan cannot drift to paths that do not exist.
//!
//! The plan's `${VAR}` user variables and `${__P(name,default)}` properties resolve to their
//! defaults. Any other `${…}` segment is a runtime value, so it matches an OpenAPI `{param}`
//! segment. Set `JMETER_PLAN_OPENAPI=FILE` to check against a document in a file instead of
//! the one the server serves.

mod common;

use std::collections::HashMap;

use common::TestApp;
use serde_json::Value;

const PLAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../loadtest/jmeter/registrar.jmx"
);

/// One HTTP sampler of the plan.
#[derive(Debug)]
struct Sampler {
    name: String,
    method: String,
    path: String,
}

/// Returns the text of the `<stringProp name="{name}">` child of `node`.
fn string_prop<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name("stringProp") && c.attribute("name") == Some(name))
        .map(|c| c.text().unwrap_or(""))
}

/// Reads the plan's user-defined variables: name to raw value.
fn plan_variables(doc: &roxmltree::Document) -> HashMap<String, String> {
    let plan = doc
        .descendants()
        .find(|n| n.has_tag_name("TestPlan"))
        .expect("the plan has a TestPlan element");
    plan.descendants()
        .filter(|n| n.has_tag_name("elementProp") && n.attribute("elementType") == Some("Argument"))
        .filter_map(|n| {
            let name = string_prop(n, "Argument.name")?;
            let value = string_prop(n, "Argument.value")?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn plan_samplers(doc: &roxmltree::Document) -> Vec<Sampler> {
    doc.descendants()
        .filter(|n| n.has_tag_name("HTTPSamplerProxy"))
        .map(|n| Sampler {
            name: n.attribute("testname").unwrap_or("?").to_owned(),
            method: string_prop(n, "HTTPSampler.method")
                .unwrap_or("GET")
                .to_uppercase(),
            path: string_prop(n, "HTTPSampler.path").unwrap_or("").to_owned(),
        })
        .collect()
}

/// Returns the byte index just past the `}` that closes the `${` at `start`.
fn closing_brace(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Resolves `${__P(name,default)}` to its default and `${VAR}` to the user variable's
/// resolved value. Other expressions, such as runtime variables, stay as they are.
fn resolve(text: &str, variables: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = closing_brace(rest, start) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..end - 1];
        if let Some(args) = inner.strip_prefix("__P(").and_then(|a| a.strip_suffix(')')) {
            let default = args.split_once(',').map_or("", |(_, d)| d);
            out.push_str(&resolve(default, variables));
        } else if let Some(value) = variables.get(inner) {
            out.push_str(&resolve(value, variables));
        } else {
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Matches one resolved plan segment against one OpenAPI segment. A `{param}` template takes
/// any literal or any runtime `${…}` value; a literal template takes only itself.
fn segment_matches(plan: &str, template: &str) -> bool {
    let is_param = template.starts_with('{') && template.ends_with('}');
    if plan.contains("${") {
        return is_param;
    }
    is_param || plan == template
}

/// Matches a resolved plan path against an OpenAPI path; a trailing slash is ignored, as the
/// service ignores it.
fn path_matches(plan: &str, template: &str) -> bool {
    let plan: Vec<&str> = plan.trim_end_matches('/').split('/').collect();
    let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    plan.len() == template.len()
        && plan
            .iter()
            .zip(&template)
            .all(|(p, t)| segment_matches(p, t))
}

/// Lists `(METHOD, path)` of every operation in an OpenAPI 3 document.
fn operations(document: &Value) -> Vec<(String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = document["paths"]
        .as_object()
        .expect("the OpenAPI document has a paths object");
    let mut found = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                found.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

async fn openapi_document() -> Value {
    if let Ok(file) = std::env::var("JMETER_PLAN_OPENAPI") {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("failed to read JMETER_PLAN_OPENAPI={file}: {e}"));
        return serde_json::from_str(&text).expect("JMETER_PLAN_OPENAPI holds JSON");
    }
    let app = TestApp::spawn().await;
    let (status, document) = app.get("/openapi.json").await;
    assert_eq!(
        status, 200,
        "GET /openapi.json returned {status}; the service must serve its OpenAPI document"
    );
    document
}

fn load_plan() -> (HashMap<String, String>, Vec<Sampler>) {
    let text = std::fs::read_to_string(PLAN).expect("read the JMeter plan");
    let doc = roxmltree::Document::parse(&text).expect("the JMeter plan is well-formed XML");
    (plan_variables(&doc), plan_samplers(&doc))
}

#[tokio::test]
async fn jmeter_samplers_exist_in_openapi() {
    let (variables, samplers) = load_plan();
    assert!(!samplers.is_empty(), "the plan has no HTTP sampler");
    let document = openapi_document().await;
    let operations = operations(&document);
    assert!(
        !operations.is_empty(),
        "the OpenAPI document lists no operation"
    );

    let mut missing = Vec::new();
    for sampler in &samplers {
        let path = resolve(&sampler.path, &variables);
        let listed = operations
            .iter()
            .any(|(method, template)| *method == sampler.method && path_matches(&path, template));
        if !listed {
            missing.push(format!("{} {} ({})", sampler.method, path, sampler.name));
        }
    }
    assert!(
        missing.is_empty(),
        "samplers whose operation the OpenAPI document does not list: {missing:#?}"
    );
}

#[test]
fn plan_paths_resolve_to_api_routes() {
    let (variables, samplers) = load_plan();
    let paths: Vec<String> = samplers
        .iter()
        .map(|s| resolve(&s.path, &variables))
        .collect();
    for path in &paths {
        assert!(path.starts_with('/'), "{path} is not absolute");
        assert!(!path.contains("${API_PREFIX}"), "{path} kept the prefix");
    }
    assert!(paths.contains(&"/api/v1/queue/inscripciones/async-by-groups".to_owned()));
    assert!(paths.contains(&"/api/v1/queue/tasks/${MAIN_TASK_ID}/status".to_owned()));
    assert!(paths.contains(&"/api/v1/queue/inscripciones/async".to_owned()));
    assert!(paths.contains(&"/health".to_owned()));
}

#[test]
fn plan_thread_groups_are_bounded() {
    let text = std::fs::read_to_string(PLAN).expect("read the JMeter plan");
    let doc = roxmltree::Document::parse(&text).expect("the JMeter plan is well-formed XML");
    let variables = plan_variables(&doc);
    let groups: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("ThreadGroup"))
        .collect();
    assert_eq!(groups.len(), 4, "one thread group per scenario");
    for group in groups {
        let name = group.attribute("testname").unwrap_or("?");
        let scheduler = group
            .children()
            .find(|c| c.attribute("name") == Some("ThreadGroup.scheduler"))
            .and_then(|c| c.text());
        assert_eq!(scheduler, Some("true"), "{name}: no duration bound");
        let number = |raw: Option<&str>| resolve(raw.unwrap_or(""), &variables).parse::<u64>();
        let duration = number(string_prop(group, "ThreadGroup.duration"));
        assert!(
            duration.as_ref().is_ok_and(|d| *d > 0),
            "{name}: duration {duration:?}"
        );
        let threads = number(string_prop(group, "ThreadGroup.num_threads"));
        assert!(
            threads.as_ref().is_ok_and(|t| *t > 0),
            "{name}: threads {threads:?}"
        );
        let controller = group
            .children()
            .find(|c| c.attribute("name") == Some("ThreadGroup.main_controller"))
            .expect("thread group has a loop controller");
        let loops = number(string_prop(controller, "LoopController.loops"));
        assert!(
            loops.as_ref().is_ok_and(|l| *l > 0),
            "{name}: loops {loops:?}"
        );
    }
}

#[test]
fn resolve_uses_property_defaults() {
    let variables = HashMap::from([
        ("PREFIX".to_owned(), "${__P(prefix,/api/v1)}".to_owned()),
        (
            "PORT".to_owned(),
            "${__P(port,${__P(fallback,8003)})}".to_owned(),
        ),
    ]);
    assert_eq!(resolve("${PREFIX}/x/${ID}", &variables), "/api/v1/x/${ID}");
    assert_eq!(resolve("${PORT}", &variables), "8003");
    assert_eq!(resolve("no variables", &variables), "no variables");
    assert_eq!(resolve("${unclosed", &variables), "${unclosed");
}

#[test]
fn path_matching_rules() {
    let template = "/api/v1/queue/tasks/{task_id}/status";
    assert!(path_matches("/api/v1/queue/tasks/${TASK}/status", template));
    assert!(path_matches("/api/v1/queue/tasks/abc/status", template));
    assert!(path_matches("/api/v1/queue/tasks/abc/status/", template));
    assert!(!path_matches("/api/v1/queue/tasks/status", template));
    assert!(!path_matches("/queue/tasks/${TASK}/status", template));
    assert!(!path_matches("/api/v1/queue/${X}", "/api/v1/queue/stats"));
    assert!(path_matches("/health", "/health"));
    assert!(!path_matches("/healthz", "/health"));
}

#[test]
fn operations_lists_each_method() {
    let document = serde_json::json!({"paths": {
        "/a": {"get": {}, "post": {}, "parameters": []},
        "/b/{id}": {"delete": {}},
    }});
    let mut found = operations(&document);
    found.sort();
    assert_eq!(
        found,
        vec![
            ("DELETE".to_owned(), "/b/{id}".to_owned()),
            ("GET".to_owned(), "/a".to_owned()),
            ("POST".to_owned(), "/a".to_owned()),
        ]
    );
}
