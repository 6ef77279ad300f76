//! The demo catalog: every id that the predecessor's README, scripts, load-test plan and
//! concurrency test use, so that those clients find real rows. Loading it twice changes
//! nothing, because existing rows are kept.
//!
//! Periods: `2024-2` is ACTIVO, `1-2025` is PLANIFICADO, `2024-01` and `2023-2` are CERRADO.
//! `G-ELC108-E` has one seat, so exactly one of ten racing students gets it.
//!
//! Prerequisites sit only on materias that the predecessor's clients never request (MAT102,
//! INF120, ELC202), so their flows and the load-test students, who have no historial, still
//! enroll. EST001 has passed MAT101 and INF110, so it meets MAT102's and INF120's.

use time::Time;
use time::macros::{date, time};

use crate::domain::catalog::{
    Aula, Bloqueo, Carrera, Catalog, Docente, EstudianteRow, GrupoRow, HistorialRow, HorarioRow,
    Materia, Prerrequisito,
};
use crate::domain::model::Periodo;

/// The period the demo catalog opens for enrollment.
pub const DEMO_ACTIVE_PERIOD: &str = "2024-2";

/// Marks an account that cannot log in; the demo students have no password.
const NO_PASSWORD: &str = "!";

pub fn demo_catalog() -> Catalog {
    Catalog {
        carreras: vec![Carrera {
            codigo_carrera: "INF".into(),
            nombre: "Ingeniería Informática".into(),
        }],
        materias: materias(),
        prerrequisitos: prerrequisitos(),
        docentes: (1..=4)
            .map(|i| Docente {
                codigo_docente: format!("DOC{i:03}"),
                nombre: Some(format!("Docente {i}")),
                apellido: Some("Demo".into()),
                ci: None,
                correo: Some(format!("docente{i}@demo.invalid")),
                telefono: None,
            })
            .collect(),
        aulas: ["A-101", "A-102", "B-201", "LAB-1"]
            .iter()
            .map(|code| Aula {
                codigo_aula: (*code).into(),
                modulo: code.split('-').next().map(Into::into),
                aula: code.split('-').nth(1).map(Into::into),
                capacidad: Some(45),
                ubicacion: Some("Campus central".into()),
            })
            .collect(),
        horarios: horarios(),
        grupos: grupos(),
        periodos: periodos(),
        estudiantes: estudiantes(),
        bloqueos: vec![Bloqueo {
            codigo_bloqueo: "BLQ-0001".into(),
            registro_academico: "BLQ002".into(),
            descripcion: Some("Deuda pendiente en tesorería".into()),
        }],
        historial: historial(),
    }
}

fn materias() -> Vec<Materia> {
    let rows: [(&str, &str, i64); 12] = [
        ("ELC102", "Circuitos Eléctricos I", 5),
        ("ELC106", "Electrónica Digital", 4),
        ("ELC108", "Sistemas Embebidos", 4),
        ("ELC110", "Señales y Sistemas", 4),
        ("MAT207", "Ecuaciones Diferenciales", 5),
        ("FIS101", "Física I", 5),
        ("QUI203", "Química General", 4),
        ("INF110", "Introducción a la Programación", 5),
        ("MAT101", "Cálculo I", 5),
        ("MAT102", "Cálculo II", 5),
        ("INF120", "Programación II", 5),
        ("ELC202", "Circuitos Eléctricos II", 5),
    ];
    rows.iter()
        .map(|(sigla, nombre, creditos)| Materia {
            sigla: (*sigla).into(),
            nombre: (*nombre).into(),
            creditos: *creditos,
            es_electiva: false,
        })
        .collect()
}

/// Each materia with the materias that must be passed first.
fn prerrequisitos() -> Vec<Prerrequisito> {
    let pairs = [
        ("MAT102", "MAT101"),
        ("INF120", "INF110"),
        ("ELC202", "ELC102"),
        ("ELC202", "MAT102"),
    ];
    pairs
        .iter()
        .map(|(materia, requerida)| Prerrequisito {
            sigla_materia: (*materia).into(),
            sigla_requerida: (*requerida).into(),
        })
        .collect()
}

fn slot(code: &str, days: &[&str], start: Time, end: Time) -> HorarioRow {
    HorarioRow {
        codigo_horario: code.into(),
        dias_semana: days.iter().map(|d| (*d).into()).collect(),
        hora_inicio: start,
        hora_fin: end,
    }
}

/// Meeting slots chosen so the documented flows behave the same every time: the README's two
/// groups and the load-test plan's pairs do not overlap, and `G-ELC110-E` overlaps
/// `G-ELC102-E` to show a schedule conflict. The groups with prerequisites meet on Saturday,
/// apart from every other group.
fn horarios() -> Vec<HorarioRow> {
    vec![
        slot(
            "H-LM0810",
            &["LUNES", "MIERCOLES"],
            time!(8:00),
            time!(10:00),
        ),
        slot("H-MJ0810", &["MARTES", "JUEVES"], time!(8:00), time!(10:00)),
        slot(
            "H-LM1012",
            &["LUNES", "MIERCOLES"],
            time!(10:00),
            time!(12:00),
        ),
        slot(
            "H-LM0911",
            &["LUNES", "MIERCOLES"],
            time!(9:00),
            time!(11:00),
        ),
        slot(
            "H-LM1416",
            &["LUNES", "MIERCOLES"],
            time!(14:00),
            time!(16:00),
        ),
        slot(
            "H-MJ1416",
            &["MARTES", "JUEVES"],
            time!(14:00),
            time!(16:00),
        ),
        slot("H-V0812", &["VIERNES"], time!(8:00), time!(12:00)),
        slot(
            "H-MJ1012",
            &["MARTES", "JUEVES"],
            time!(10:00),
            time!(12:00),
        ),
        slot("H-V1416", &["VIERNES"], time!(14:00), time!(16:00)),
        slot(
            "H-LM1618",
            &["LUNES", "MIERCOLES"],
            time!(16:00),
            time!(18:00),
        ),
        slot(
            "H-MJ1618",
            &["MARTES", "JUEVES"],
            time!(16:00),
            time!(18:00),
        ),
        slot("H-S0810", &["SABADO"], time!(8:00), time!(10:00)),
        slot("H-S1012", &["SABADO"], time!(10:00), time!(12:00)),
        slot("H-S1416", &["SABADO"], time!(14:00), time!(16:00)),
    ]
}

fn grupos() -> Vec<GrupoRow> {
    let rows: [(&str, &str, &str, &str, &str, i64); 15] = [
        ("G-ELC102-E", "ELC102", "DOC001", "A-101", "H-LM0810", 40),
        ("G-ELC106-E", "ELC106", "DOC002", "A-102", "H-MJ0810", 40),
        ("G-ELC108-E", "ELC108", "DOC003", "LAB-1", "H-LM1012", 1),
        ("G-ELC110-E", "ELC110", "DOC004", "B-201", "H-LM0911", 40),
        ("G1MAT207", "MAT207", "DOC001", "A-101", "H-LM1416", 40),
        ("G2MAT207", "MAT207", "DOC002", "A-102", "H-MJ1416", 40),
        ("G3MAT207", "MAT207", "DOC003", "B-201", "H-V0812", 40),
        ("G1FIS101", "FIS101", "DOC004", "LAB-1", "H-MJ1012", 40),
        ("G2FIS101", "FIS101", "DOC001", "LAB-1", "H-V1416", 40),
        ("G1QUI203", "QUI203", "DOC002", "B-201", "H-LM1618", 40),
        ("G1INF110", "INF110", "DOC003", "LAB-1", "H-MJ1618", 40),
        ("G1MAT101", "MAT101", "DOC004", "A-101", "H-MJ0810", 40),
        ("G1MAT102", "MAT102", "DOC001", "A-101", "H-S0810", 40),
        ("G1INF120", "INF120", "DOC003", "LAB-1", "H-S1012", 40),
        ("G1ELC202", "ELC202", "DOC002", "A-102", "H-S1416", 40),
    ];
    rows.iter()
        .map(|(code, sigla, docente, aula, horario, cupo)| GrupoRow {
            codigo_grupo: (*code).into(),
            sigla_materia: (*sigla).into(),
            codigo_docente: Some((*docente).into()),
            codigo_aula: Some((*aula).into()),
            codigo_horario: Some((*horario).into()),
            descripcion: Some(format!("Grupo {code}")),
            cupo: *cupo,
        })
        .collect()
}

fn periodos() -> Vec<Periodo> {
    let periodo = |code: &str, semestre: &str, inicio, fin, estado: &str| Periodo {
        codigo_periodo: code.into(),
        semestre: Some(semestre.into()),
        fecha_inicio: Some(inicio),
        fecha_fin: Some(fin),
        estado: Some(estado.into()),
    };
    vec![
        periodo(
            "2023-2",
            "2/2023",
            date!(2023 - 08 - 01),
            date!(2023 - 12 - 15),
            "CERRADO",
        ),
        periodo(
            "2024-01",
            "1/2024",
            date!(2024 - 02 - 01),
            date!(2024 - 06 - 30),
            "CERRADO",
        ),
        periodo(
            DEMO_ACTIVE_PERIOD,
            "2/2024",
            date!(2024 - 08 - 01),
            date!(2027 - 12 - 31),
            "ACTIVO",
        ),
        periodo(
            "1-2025",
            "1/2025",
            date!(2025 - 02 - 01),
            date!(2025 - 06 - 30),
            "PLANIFICADO",
        ),
    ]
}

fn student(ra: &str, nombre: &str, apellido: &str, estado: &str) -> EstudianteRow {
    EstudianteRow {
        registro_academico: ra.into(),
        codigo_carrera: Some("INF".into()),
        nombre: nombre.into(),
        apellido: apellido.into(),
        ci: None,
        correo: Some(format!("{}@demo.invalid", ra.to_lowercase())),
        contrasena: NO_PASSWORD.into(),
        telefono: None,
        direccion: None,
        estado_academico: estado.into(),
    }
}

fn estudiantes() -> Vec<EstudianteRow> {
    let mut rows = vec![
        student("EST001", "Ana", "Pérez", "REGULAR"),
        student("TEST001", "Test", "Uno", "REGULAR"),
        student("BLQ001", "Bruno", "Bloqueado", "BLOQUEADO"),
        student("BLQ002", "Berta", "Con Bloqueo", "REGULAR"),
    ];
    rows.extend((1..=3).map(|i| student(&format!("PERF_TEST_{i:03}"), "Perf", "Test", "REGULAR")));
    rows.extend((1..=10).map(|i| {
        student(
            &format!("RA{i:04}"),
            "Estudiante",
            "Concurrencia",
            "REGULAR",
        )
    }));
    rows.extend(
        (0..10_000).map(|i| student(&format!("EST{i:04}"), "Estudiante", "Carga", "REGULAR")),
    );
    rows
}

/// EST001's record across two closed periods, with all three states.
fn historial() -> Vec<HistorialRow> {
    let row = |sigla: &str, periodo: &str, nota: Option<f64>, estado: &str, fecha| HistorialRow {
        registro_academico: "EST001".into(),
        sigla_materia: sigla.into(),
        codigo_periodo: periodo.into(),
        nota_final: nota,
        estado: estado.into(),
        observacion: None,
        fecha_registro: Some(fecha),
    };
    vec![
        row(
            "INF110",
            "2023-2",
            Some(85.5),
            "APROBADA",
            date!(2023 - 12 - 10),
        ),
        row(
            "MAT101",
            "2023-2",
            Some(42.0),
            "REPROBADA",
            date!(2023 - 12 - 10),
        ),
        row(
            "MAT101",
            "2024-01",
            Some(71.0),
            "APROBADA",
            date!(2024 - 06 - 25),
        ),
        row("QUI203", "2024-01", None, "RETIRADA", date!(2024 - 04 - 02)),
    ]
}
