//! A real term of course offerings (Fairfield University, spring 2019, public data) converted
//! to the import format, imported twice, and enrolled against: real meeting patterns must
//! trigger the schedule-conflict and same-materia rules where they overlap and not elsewhere.
//!
//! The data is not part of the repository: the test reads the folder named by
//! `REGISTRAR_FAIRFIELD_DIR` (holding `sections.csv`) and is skipped, saying so, without it.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestApp, fresh_db, scalar, test_config};
use serde_json::{Value, json};

/// One section with its first meeting pattern, as converted.
#[derive(Debug, Clone)]
struct Section {
    crn: String,
    sigla: String,
    days: Vec<String>,
    /// Minutes since midnight, start and end.
    times: Option<(u32, u32)>,
}

fn day_name(letter: char) -> Option<&'static str> {
    Some(match letter {
        'M' => "LUNES",
        'T' => "MARTES",
        'W' => "MIERCOLES",
        'R' => "JUEVES",
        'F' => "VIERNES",
        'S' => "SABADO",
        'U' => "DOMINGO",
        _ => return None,
    })
}

/// Parses `0930am` into minutes since midnight.
fn parse_clock(text: &str) -> Option<u32> {
    let (digits, meridiem) = text.split_at(4);
    let hours: u32 = digits[..2].parse().ok()?;
    let minutes: u32 = digits[2..].parse().ok()?;
    let hours = match (meridiem, hours) {
        ("am", 12) => 0,
        ("am", h) => h,
        ("pm", 12) => 12,
        ("pm", h) => h + 12,
        _ => return None,
    };
    Some(hours * 60 + minutes)
}

fn parse_range(text: &str) -> Option<(u32, u32)> {
    let (start, end) = text.split_once('-')?;
    let (start, end) = (parse_clock(start)?, parse_clock(end)?);
    (end > start).then_some((start, end))
}

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}:00", minutes / 60, minutes % 60)
}

/// Converts `sections.csv` into an import document and the list of converted sections.
/// Sections without seats are left out, because the schema requires `cupo > 0`.
fn convert(dir: &Path) -> (Value, Vec<Section>) {
    let mut reader = csv::Reader::from_path(dir.join("sections.csv")).expect("sections.csv");
    let mut materias = BTreeMap::new();
    let mut docentes = BTreeMap::new();
    let mut aulas = BTreeMap::new();
    let mut horarios = Vec::new();
    let mut grupos = Vec::new();
    let mut sections = Vec::new();
    let mut seen = HashSet::new();

    for record in reader.deserialize::<BTreeMap<String, String>>() {
        let row = record.expect("CSV row");
        let crn = row["crn"].clone();
        let cap: i64 = row["cap"].parse().unwrap_or(0);
        if cap <= 0 || !seen.insert(crn.clone()) {
            continue;
        }
        let sigla = row["catalog_id"].replace(' ', "");
        let credits = row["credits"].parse::<f64>().unwrap_or(0.0) as i64;
        let title: String = row["title"].chars().take(100).collect();
        materias.entry(sigla.clone()).or_insert(json!({
            "sigla": sigla, "nombre": title, "creditos": credits, "es_electiva": false,
        }));

        let instructor = row["instructor"].trim().to_owned();
        let docente = (!instructor.is_empty()).then(|| {
            let code = format!("IN{}", instructor.trim_start_matches("Instructor ").trim());
            docentes.entry(code.clone()).or_insert(json!({
                "codigo_docente": code, "nombre": instructor, "apellido": null,
                "ci": null, "correo": null, "telefono": null,
            }));
            code
        });
        let location = row["location"].trim().to_owned();
        let aula = (!location.is_empty()).then(|| {
            let next = format!("R{:04}", aulas.len() + 1);
            let entry = aulas.entry(location.clone()).or_insert(json!({
                "codigo_aula": next, "modulo": null, "aula": null, "capacidad": null,
                "ubicacion": location,
            }));
            entry["codigo_aula"].as_str().expect("code").to_owned()
        });

        let days: Vec<String> = row["days"]
            .chars()
            .filter_map(day_name)
            .map(str::to_owned)
            .collect();
        let times = parse_range(row["times"].trim());
        let horario = match (days.is_empty(), times) {
            (false, Some((start, end))) => {
                let code = format!("H{crn}");
                horarios.push(json!({
                    "codigo_horario": code, "dias_semana": days,
                    "hora_inicio": clock(start), "hora_fin": clock(end),
                }));
                Some(code)
            }
            _ => None,
        };
        grupos.push(json!({
            "codigo_grupo": crn, "sigla_materia": sigla, "codigo_docente": docente,
            "codigo_aula": aula, "codigo_horario": horario, "cupo": cap,
            "descripcion": format!("{} section {}", row["catalog_id"], row["section"]),
        }));
        sections.push(Section {
            crn,
            sigla,
            days,
            times: horario.and(times),
        });
    }

    let document = json!({
        "materias": materias.into_values().collect::<Vec<_>>(),
        "docentes": docentes.into_values().collect::<Vec<_>>(),
        "aulas": aulas.into_values().collect::<Vec<_>>(),
        "horarios": horarios,
        "grupos": grupos,
        "periodos": [{
            "codigo_periodo": "SP2019", "semestre": "Spring2019",
            "fecha_inicio": "2019-01-22", "fecha_fin": "2019-05-10", "estado": "PLANIFICADO",
        }],
    });
    (document, sections)
}

fn overlaps(a: &Section, b: &Section) -> bool {
    let (Some((s1, e1)), Some((s2, e2))) = (a.times, b.times) else {
        return false;
    };
    s1 < e2 && s2 < e1 && a.days.iter().any(|d| b.days.contains(d))
}

fn import(db: &common::TestDb, file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("import")
        .arg(file)
        .env("DATABASE_URL", db.url())
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run registrar import");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn real_catalog_imports_and_applies_rules() {
    let Some(dir) = std::env::var_os("REGISTRAR_FAIRFIELD_DIR").map(PathBuf::from) else {
        eprintln!("skipped: REGISTRAR_FAIRFIELD_DIR is not set");
        return;
    };
    if !dir.join("sections.csv").exists() {
        eprintln!("skipped: {} has no sections.csv", dir.display());
        return;
    }
    let (document, sections) = convert(&dir);
    assert!(
        sections.len() > 1_000,
        "expected a full term, got {}",
        sections.len()
    );
    let file = std::env::temp_dir().join(format!("fairfield-{}.json", std::process::id()));
    std::fs::write(&file, document.to_string()).expect("write document");

    let db = fresh_db().await;
    let first = import(&db, &file);
    assert!(!first.contains("rows changed: 0"), "{first}");
    let second = import(&db, &file);
    assert!(second.contains("rows changed: 0"), "{second}");
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM grupo WHERE codigo_grupo NOT LIKE 'G%'"
        )
        .await,
        sections.len() as i64
    );

    let app = TestApp::start(db.clone(), test_config(&db), true).await;
    let (status, _) = app
        .post("/api/v1/periodos/SP2019/activar", &json!({}))
        .await;
    assert_eq!(status, 200);

    let timed: Vec<&Section> = sections.iter().filter(|s| s.times.is_some()).collect();
    let conflict = timed
        .iter()
        .flat_map(|a| timed.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a.sigla != b.sigla && overlaps(a, b))
        .expect("a term has overlapping sections");
    let job = app
        .enroll("EST0001", "SP2019", &[&conflict.0.crn, &conflict.1.crn])
        .await;
    assert_eq!(job["result"]["error_code"], "CONFLICTO_HORARIO", "{job}");

    let same_course = timed
        .iter()
        .flat_map(|a| timed.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a.crn != b.crn && a.sigla == b.sigla && !overlaps(a, b))
        .expect("a course with two sections");
    let job = app
        .enroll(
            "EST0002",
            "SP2019",
            &[&same_course.0.crn, &same_course.1.crn],
        )
        .await;
    assert_eq!(job["result"]["error_code"], "GRUPO_DUPLICADO", "{job}");

    let mut schedule: Vec<&Section> = Vec::new();
    for section in &timed {
        if schedule.len() == 4 {
            break;
        }
        let fits = schedule
            .iter()
            .all(|s| s.sigla != section.sigla && !overlaps(s, section));
        if fits {
            schedule.push(section);
        }
    }
    let crns: Vec<&str> = schedule.iter().map(|s| s.crn.as_str()).collect();
    let job = app.enroll("EST0003", "SP2019", &crns).await;
    assert_eq!(job["result"]["status"], "SUCCESS", "{job}");
    let (_, listing) = app.get("/api/v1/inscripciones/estudiante/EST0003").await;
    assert_eq!(
        listing["inscripciones"][0]["detalles"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    common::assert_invariants(&app.db).await;
}
