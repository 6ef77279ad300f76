//! The `registrar` binary's start-up: configuration comes from the environment, and a
//! malformed value stops the process with a message naming the variable.

use std::process::Command;

fn registrar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    command.env("LOG_LEVEL", "warn");
    command
}

#[test]
fn malformed_port_names_the_variable() {
    let output = registrar()
        .arg("migrate")
        .env("PORT", "eighty")
        .output()
        .expect("run registrar");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[test]
fn database_url_is_read_from_environment() {
    let dir = std::env::temp_dir().join(format!("registrar-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create dir");
    let file = dir.join("from-env.db");
    let _ = std::fs::remove_file(&file);

    let output = registrar()
        .arg("migrate")
        .env("DATABASE_URL", format!("sqlite://{}", file.display()))
        .output()
        .expect("run registrar");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        file.exists(),
        "migrate must create the file DATABASE_URL names"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_database_scheme_is_rejected() {
    let output = registrar()
        .arg("migrate")
        .env("DATABASE_URL", "mysql://localhost/x")
        .output()
        .expect("run registrar");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn malformed_breaker_overrides_rejected() {
    let cases = [
        ("bogus:timeout=1", "no breaker is named"),
        ("billing:timeout=1e30", "at most 86400"),
        ("billing:failure_threshold=1.5", "whole number"),
        ("billing:color=red", "unknown key"),
        ("billing", "name:key=value"),
    ];
    for (value, expected) in cases {
        let output = registrar()
            .arg("migrate")
            .env("CIRCUIT_BREAKERS", value)
            .env("DATABASE_URL", "sqlite::memory:")
            .output()
            .expect("run registrar");
        assert_eq!(output.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("CIRCUIT_BREAKERS"), "{value}: {stderr}");
        assert!(stderr.contains(expected), "{value}: {stderr}");
    }
}

#[test]
fn billing_url_needs_http() {
    let output = registrar()
        .arg("migrate")
        .env("BILLING_URL", "https://127.0.0.1:9")
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .expect("run registrar");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BILLING_URL"), "{stderr}");
}
