//! `registrar import` as an operator runs it: the binary against a fresh database, with the
//! example catalog in both formats, a second run that changes nothing, and a broken file that
//! writes nothing and reports every problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestDb, fresh_db, scalar};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn import(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("import")
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run registrar import")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn csv_import_loads_then_changes_nothing() {
    let db = fresh_db().await;
    let folder = examples().join("catalog");
    let folder = folder.to_str().expect("utf-8 path");

    let first = import(&db, &[folder]);
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    assert!(
        stdout(&first).contains("rows changed: 35"),
        "{}",
        stdout(&first)
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM grupo WHERE codigo_grupo LIKE 'SIS%'"
        )
        .await,
        4
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM historial_academico WHERE registro_academico LIKE 'S2025%'"
        )
        .await,
        3
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM bloqueo WHERE codigo_bloqueo = 'B-2025-01'"
        )
        .await,
        1
    );

    let second = import(&db, &[folder]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("rows changed: 0"),
        "{}",
        stdout(&second)
    );

    let json = examples().join("catalog.json");
    let third = import(&db, &[json.to_str().expect("utf-8 path")]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stdout(&third).contains("rows changed: 0"),
        "the JSON document holds the same catalog: {}",
        stdout(&third)
    );
    common::drop_database(&db);
}

#[tokio::test]
async fn changed_row_is_updated_and_counters_kept() {
    let db = fresh_db().await;
    let dir = tempdir();
    std::fs::write(
        dir.join("grupos.csv"),
        "codigo_grupo,sigla_materia,codigo_docente,codigo_aula,codigo_horario,descripcion,cupo\n\
         G-ELC102-E,ELC102,DOC001,A-101,H-LM0810,Grupo ampliado,55\n",
    )
    .expect("write");
    common::execute(
        &db,
        "UPDATE grupo SET inscritos_actuales = 3 WHERE codigo_grupo = $1",
        &["G-ELC102-E"],
    )
    .await;
    let out = import(&db, &[dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rows changed: 1"), "{}", stdout(&out));
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(cupo AS BIGINT) FROM grupo WHERE codigo_grupo = 'G-ELC102-E'"
        )
        .await,
        55
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT CAST(inscritos_actuales AS BIGINT) FROM grupo WHERE codigo_grupo = 'G-ELC102-E'"
        )
        .await,
        3
    );
    common::drop_database(&db);
}

#[tokio::test]
async fn invalid_rows_are_all_reported_and_nothing_written() {
    let db = fresh_db().await;
    let dir = tempdir();
    std::fs::write(
        dir.join("materias.csv"),
        "sigla,nombre,creditos\nNEW1,Materia nueva,4\nNEW2,,x\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("grupos.csv"),
        "codigo_grupo,sigla_materia,cupo\nGNEW1,NEW1,30\nGNEW2,NOPE,0\n",
    )
    .expect("write");
    let out = import(&db, &[dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stderr(&out);
    assert!(
        report.contains("materias.csv:3: nombre: is required"),
        "{report}"
    );
    assert!(
        report.contains("materias.csv:3: creditos: must be a whole number"),
        "{report}"
    );
    assert!(
        report.contains("grupos.csv:3: sigla_materia: materia NOPE"),
        "{report}"
    );
    assert!(
        report.contains("grupos.csv:3: cupo: must be between 1 and 100000"),
        "{report}"
    );
    assert!(
        report.contains("grupos.csv:1: codigo_horario: column is missing"),
        "{report}"
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM materia WHERE sigla = 'NEW1'").await,
        0
    );

    let dry = import(
        &db,
        &[
            "--dry-run",
            examples().join("catalog").to_str().expect("utf-8"),
        ],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM materia WHERE sigla = 'SIS101'").await,
        0
    );
    common::drop_database(&db);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "registrar-import-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create dir");
    dir
}
