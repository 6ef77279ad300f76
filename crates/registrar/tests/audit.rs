//! The audit trail: events written by the API and the workers, read back through
//! `GET /api/v1/audit` with its filters and pagination.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};

const PERIOD: &str = "2024-2";

/// Posts `body` to `path` with the given correlation id; returns the status and body.
async fn post_with_correlation(
    app: &TestApp,
    path: &str,
    body: &Value,
    correlation_id: &str,
) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("x-correlation-id", correlation_id)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn audit(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn events(body: &Value) -> &Vec<Value> {
    body["events"].as_array().expect("events array")
}

#[tokio::test]
async fn queued_rejection_is_one_indexed_query() {
    let app = TestApp::spawn().await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);

    // G-ELC108-E has one seat: the first student takes it, the second is rejected.
    let first = app.enroll("EST0001", PERIOD, &["G-ELC108-E"]).await;
    assert_eq!(first["result"]["status"], "SUCCESS", "{first}");
    let body = json!({ "registro_academico": "EST0002", "codigo_periodo": PERIOD, "grupos": ["G-ELC108-E"] });
    let (status, queued) = post_with_correlation(
        &app,
        "/api/v1/queue/inscripciones/async-by-groups",
        &body,
        "corr-rejected-108",
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let main = queued["main_task_id"]
        .as_str()
        .expect("main_task_id")
        .to_owned();
    let done = app.wait_terminal(&[main], Duration::from_secs(30)).await;
    assert_eq!(
        done[0]["result"]["error_code"], "GRUPO_SIN_CUPO",
        "{}",
        done[0]
    );

    let after = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let rfc = &time::format_description::well_known::Rfc3339;
    let query = format!(
        "event_type=INSCRIPTION_FAILED&codigo_grupo=G-ELC108-E&from={}&to={}",
        before.format(rfc).unwrap(),
        after.format(rfc).unwrap()
    )
    .replace('+', "%2B");
    let body = audit(&app, &query).await;
    let rejected = events(&body);
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["registro_academico"], "EST0002");
    assert_eq!(rejected[0]["error_code"], "GRUPO_SIN_CUPO");
    assert_eq!(rejected[0]["correlation_id"], "corr-rejected-108");
    assert_eq!(rejected[0]["data"]["grupos"], json!(["G-ELC108-E"]));
    app.stop().await;
}

#[tokio::test]
async fn queued_request_events_share_correlation_id() {
    let app = TestApp::spawn().await;
    let body = json!({ "registro_academico": "EST0003", "codigo_periodo": PERIOD, "grupos": ["G-ELC102-E", "G-ELC106-E"] });
    let (status, queued) = post_with_correlation(
        &app,
        "/api/v1/queue/inscripciones/async-by-groups",
        &body,
        "corr-follow-me",
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let main = queued["main_task_id"]
        .as_str()
        .expect("main_task_id")
        .to_owned();
    app.wait_terminal(std::slice::from_ref(&main), Duration::from_secs(30))
        .await;

    let body = audit(&app, "correlation_id=corr-follow-me").await;
    let types: Vec<&str> = events(&body)
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    // Newest first: the worker's outcome, then the API's request.
    assert_eq!(
        types,
        ["INSCRIPTION_CREATED", "INSCRIPTION_REQUESTED"],
        "{body}"
    );
    let requested = &events(&body)[1];
    assert_eq!(requested["entity_id"], main);
    assert_eq!(
        requested["data"]["grupos"],
        json!(["G-ELC102-E", "G-ELC106-E"])
    );
    let created = &events(&body)[0];
    assert_eq!(created["registro_academico"], "EST0003");
    assert_eq!(created["request_id"], requested["request_id"]);
    assert!(created["request_id"].is_string(), "{created}");
    app.stop().await;
}

#[tokio::test]
async fn sync_rejection_names_conflicting_group() {
    let app = TestApp::spawn().await;
    let body = json!({ "registro_academico": "EST0004", "codigo_periodo": PERIOD, "grupos": ["G-ELC102-E", "G-ELC110-E"] });
    let (status, response) =
        post_with_correlation(&app, "/api/v1/inscripciones/sync", &body, "corr-sync-1").await;
    assert_eq!(status, 409, "{response}");

    let body = audit(&app, "registro_academico=EST0004").await;
    let list = events(&body);
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(list[0]["event_type"], "INSCRIPTION_FAILED");
    assert_eq!(list[0]["error_code"], "CONFLICTO_HORARIO");
    assert_eq!(list[0]["action"], "create_sync");
    assert!(list[0]["codigo_grupo"].is_string(), "{}", list[0]);
    assert_eq!(list[1]["event_type"], "INSCRIPTION_REQUESTED");
    assert_eq!(list[1]["correlation_id"], "corr-sync-1");
    app.stop().await;
}

#[tokio::test]
async fn group_changes_and_delete_are_audited() {
    let app = TestApp::spawn().await;
    let body = json!({ "registro_academico": "EST0005", "codigo_periodo": PERIOD, "grupos": ["G-ELC102-E"] });
    let (status, created) = app.post("/api/v1/inscripciones/sync", &body).await;
    assert_eq!(status, 201, "{created}");
    let codigo = created["codigo_inscripcion"].as_str().unwrap().to_owned();

    let (status, _) = app
        .post(
            &format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC106-E"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .delete(&format!("/api/v1/inscripciones/{codigo}/grupos/G-ELC106-E"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.delete(&format!("/api/v1/inscripciones/{codigo}")).await;
    assert_eq!(status, 204);

    let body = audit(&app, "registro_academico=EST0005").await;
    let types: Vec<&str> = events(&body)
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "INSCRIPTION_DELETED",
            "GROUP_REMOVED",
            // Adding a group drops the idempotency key of the synchronous create.
            "IDEMPOTENCY_INVALIDATED",
            "GROUP_ADDED",
            "INSCRIPTION_CREATED",
            "INSCRIPTION_REQUESTED"
        ],
        "{body}"
    );
    assert_eq!(events(&body)[1]["codigo_grupo"], "G-ELC106-E");
    assert_eq!(events(&body)[0]["entity_id"], codigo.as_str());
    app.stop().await;
}

#[tokio::test]
async fn admin_actions_are_audited() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/api/v1/periodos/1-2025/activar", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let body = audit(&app, "event_type=ADMIN_ACTION").await;
    let list = events(&body);
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["action"], "activate_period");
    assert_eq!(list[0]["entity_id"], "1-2025");
    app.stop().await;
}

#[tokio::test]
async fn task_cancel_is_audited() {
    let db = common::fresh_db().await;
    let config = common::test_config(&db);
    let app = TestApp::start(db, config, false).await;
    let queued = app.enqueue("EST0009", PERIOD, &["G-ELC102-E"]).await;
    let task_id = queued["main_task_id"].as_str().unwrap().to_owned();
    let (status, _) = app.delete(&format!("/api/v1/queue/tasks/{task_id}")).await;
    assert_eq!(status, 204);

    let body = audit(&app, "event_type=ADMIN_ACTION").await;
    let list = events(&body);
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["action"], "cancel_task");
    assert_eq!(list[0]["entity_type"], "job");
    assert_eq!(list[0]["entity_id"], task_id.as_str());
    assert!(list[0]["correlation_id"].is_string(), "{}", list[0]);
    app.stop().await;
}

#[tokio::test]
async fn audit_pages_with_cursor() {
    let app = TestApp::spawn().await;
    for ra in ["EST0006", "EST0007", "EST0008"] {
        let body =
            json!({ "registro_academico": ra, "codigo_periodo": PERIOD, "grupos": ["G-ELC102-E"] });
        let (status, _) = app.post("/api/v1/inscripciones/sync", &body).await;
        assert_eq!(status, 201);
    }
    let first = audit(&app, "event_type=INSCRIPTION_CREATED&limit=2").await;
    assert_eq!(events(&first).len(), 2);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("next_cursor on a full page");

    let second = audit(
        &app,
        &format!("event_type=INSCRIPTION_CREATED&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(events(&second).len(), 1, "{second}");
    assert!(second["next_cursor"].is_null());
    assert_eq!(events(&second)[0]["registro_academico"], "EST0006");
    app.stop().await;
}

#[tokio::test]
async fn audit_rejects_invalid_filters() {
    let app = TestApp::spawn().await;
    let cases = [
        ("from=yesterday", "query -> from"),
        ("to=2024-13-01T00:00:00Z", "query -> to"),
        ("event_type=NOPE", "query -> event_type"),
        ("limit=0", "query -> limit"),
        ("limit=1001", "query -> limit"),
        ("cursor=abc", "query -> cursor"),
        ("student=EST001", "query -> student"),
        (
            "from=2024-08-01T08:05:00Z&to=2024-08-01T08:00:00Z",
            "query -> to",
        ),
    ];
    for (query, field) in cases {
        let (status, body) = app.get(&format!("/api/v1/audit?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error_code"], "VALIDATION_ERROR", "{query}");
        assert_eq!(
            body["details"]["validation_errors"][0]["field"], field,
            "{query}: {body}"
        );
    }
    app.stop().await;
}

/// The rejections of one group in a time window, as the README's example queries them.
const REJECTED_FROM_GROUP: &str = "SELECT registro_academico FROM audit_event \
     WHERE codigo_grupo = 'G-7' AND event_type = 'INSCRIPTION_FAILED' \
     AND occurred_at >= 1722499200000 AND occurred_at < 1722499500000";

/// 2,000 events of 20 groups, all inside the window, so that the time index alone would
/// read every row and the group index reads 50.
const FILL_WINDOW: &str = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s \
     WHERE g < 2000) INSERT INTO audit_event (occurred_at, event_type, entity_type, action, \
     codigo_grupo) SELECT 1722499200000 + g * 100, CASE WHEN g % 2 = 0 \
     THEN 'INSCRIPTION_FAILED' ELSE 'INSCRIPTION_CREATED' END, 'inscripcion', 'test', \
     'G-' || (g % 20) FROM s";

#[tokio::test]
async fn rejections_by_group_use_index() {
    use sqlx::{Connection, Row};

    let db = common::fresh_db().await;
    let plan: String = match &db {
        common::TestDb::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
            for sql in [FILL_WINDOW, "ANALYZE"] {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            let sql = format!("EXPLAIN QUERY PLAN {REJECTED_FROM_GROUP}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("explain");
            rows.iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        common::TestDb::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("open");
            for sql in [FILL_WINDOW, "ANALYZE audit_event"] {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            let sql = format!("EXPLAIN {REJECTED_FROM_GROUP}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("explain");
            rows.iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    assert!(plan.contains("audit_event_grupo_type_time"), "{plan}");
    common::drop_database(&db);
}
