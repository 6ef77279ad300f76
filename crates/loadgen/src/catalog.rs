//! The benchmark catalog: three families of groups, each family on its own weekly slot, and
//! students `B00000…` who each take one group of every family.
//!
//! The document follows the JSON import format of `registrar import`. Each group teaches its
//! own materia, so a student's three groups never share a materia, and the three slots never
//! overlap, so no request is rejected for a schedule conflict.

use serde_json::{Value, json};

/// Code of the benchmark period.
pub const PERIODO: &str = "BENCH-1";

/// Number of group families. Every student takes one group of each.
pub const FAMILIES: usize = 3;

/// The weekly slot of each family: days, start and end. No two slots overlap.
const SLOTS: [(&[&str], &str, &str); FAMILIES] = [
    (&["LUNES", "MIERCOLES", "VIERNES"], "07:00", "08:30"),
    (&["LUNES", "MIERCOLES", "VIERNES"], "09:00", "10:30"),
    (&["MARTES", "JUEVES"], "07:00", "09:00"),
];

const CARRERA: &str = "BENCH";
const DOCENTE: &str = "BD-1";
const AULA: &str = "BA-1";

/// Maximum number of groups per family, so that group codes and siglas keep three digits.
pub const MAX_GROUPS_PER_FAMILY: usize = 999;

/// Options of one generated catalog.
#[derive(Debug, Clone)]
pub struct CatalogSpec {
    pub students: usize,
    pub groups_per_family: usize,
    /// `estado` of the period in the document; `ACTIVO` opens it for enrollment on import.
    pub periodo_estado: String,
}

/// Returns the `registro_academico` of the student with this zero-based index.
pub fn student_id(index: usize) -> String {
    format!("B{index:05}")
}

/// Returns the horario code of a family (zero-based).
fn horario_code(family: usize) -> String {
    format!("BENCH-H{}", family + 1)
}

/// Returns the code of group `index` (zero-based) of a family (zero-based).
fn group_code(family: usize, index: usize) -> String {
    format!("BG{}-{:03}", family + 1, index + 1)
}

/// Returns the sigla of the materia that group `index` of a family teaches.
fn materia_sigla(family: usize, index: usize) -> String {
    format!("BM{}{:03}", family + 1, index + 1)
}

/// Returns the three groups that the student with this index enrolls in, one per family,
/// sorted by code.
pub fn student_groups(student: usize, groups_per_family: usize) -> Vec<String> {
    (0..FAMILIES)
        .map(|family| group_code(family, student % groups_per_family))
        .collect()
}

/// Returns the seat capacity of every group: each group could take every student, so the
/// rush never fills a group.
pub fn group_cupo(spec: &CatalogSpec) -> usize {
    spec.students.max(1)
}

/// Builds the catalog document for `registrar import`.
pub fn build(spec: &CatalogSpec) -> Value {
    let cupo = group_cupo(spec);
    let mut materias = Vec::new();
    let mut grupos = Vec::new();
    for family in 0..FAMILIES {
        for index in 0..spec.groups_per_family {
            let sigla = materia_sigla(family, index);
            materias.push(json!({
                "sigla": sigla,
                "nombre": format!("Benchmark materia {}-{}", family + 1, index + 1),
                "creditos": 4,
                "es_electiva": false,
            }));
            grupos.push(json!({
                "codigo_grupo": group_code(family, index),
                "sigla_materia": sigla,
                "codigo_docente": DOCENTE,
                "codigo_aula": AULA,
                "codigo_horario": horario_code(family),
                "descripcion": format!("Benchmark group {} of family {}", index + 1, family + 1),
                "cupo": cupo,
            }));
        }
    }
    let horarios: Vec<Value> = SLOTS
        .iter()
        .enumerate()
        .map(|(family, (days, start, end))| {
            json!({
                "codigo_horario": horario_code(family),
                "dias_semana": days,
                "hora_inicio": start,
                "hora_fin": end,
            })
        })
        .collect();
    let estudiantes: Vec<Value> = (0..spec.students)
        .map(|index| {
            json!({
                "registro_academico": student_id(index),
                "codigo_carrera": CARRERA,
                "nombre": "Bench",
                "apellido": format!("Student {index}"),
                "estado_academico": "REGULAR",
                // The importer requires every column; null leaves the value empty.
                "ci": null,
                "correo": null,
                "telefono": null,
                "direccion": null,
            })
        })
        .collect();
    json!({
        "carreras": [{ "codigo_carrera": CARRERA, "nombre": "Benchmark" }],
        "materias": materias,
        "docentes": [{
            "codigo_docente": DOCENTE,
            "nombre": "Bench",
            "apellido": "Docente",
            "ci": null,
            "correo": null,
            "telefono": null,
        }],
        "aulas": [{
            "codigo_aula": AULA,
            "modulo": "B",
            "aula": "1",
            "capacidad": cupo,
            "ubicacion": "Benchmark",
        }],
        "horarios": horarios,
        "grupos": grupos,
        "periodos": [{
            "codigo_periodo": PERIODO,
            "semestre": "BENCH",
            "fecha_inicio": "2000-01-01",
            "fecha_fin": "2099-12-31",
            "estado": spec.periodo_estado,
        }],
        "estudiantes": estudiantes,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// Parses `HH:MM` into minutes after midnight.
    fn minutes(clock: &str) -> u32 {
        let (hours, mins) = clock.split_once(':').expect("HH:MM");
        hours.parse::<u32>().unwrap() * 60 + mins.parse::<u32>().unwrap()
    }

    struct Slot {
        days: HashSet<String>,
        start: u32,
        end: u32,
    }

    /// Applies the service's rule: two slots conflict when they share a day and their time
    /// ranges overlap; back-to-back slots do not.
    fn overlaps(a: &Slot, b: &Slot) -> bool {
        !a.days.is_disjoint(&b.days) && a.start < b.end && b.start < a.end
    }

    fn spec(students: usize, groups_per_family: usize) -> CatalogSpec {
        CatalogSpec {
            students,
            groups_per_family,
            periodo_estado: "ACTIVO".into(),
        }
    }

    #[test]
    fn student_groups_never_overlap() {
        let spec = spec(500, 7);
        let catalog = build(&spec);
        let slots: HashMap<String, Slot> = catalog["horarios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let slot = Slot {
                    days: h["dias_semana"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_str().unwrap().to_owned())
                        .collect(),
                    start: minutes(h["hora_inicio"].as_str().unwrap()),
                    end: minutes(h["hora_fin"].as_str().unwrap()),
                };
                (h["codigo_horario"].as_str().unwrap().to_owned(), slot)
            })
            .collect();
        let grupos: HashMap<&str, &Value> = catalog["grupos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["codigo_grupo"].as_str().unwrap(), g))
            .collect();

        for student in 0..spec.students {
            let codes = student_groups(student, spec.groups_per_family);
            assert_eq!(codes.len(), FAMILIES, "student {student}");
            let groups: Vec<&Value> = codes
                .iter()
                .map(|c| *grupos.get(c.as_str()).expect("group is in the catalog"))
                .collect();
            let materias: HashSet<&str> = groups
                .iter()
                .map(|g| g["sigla_materia"].as_str().unwrap())
                .collect();
            assert_eq!(
                materias.len(),
                FAMILIES,
                "student {student} repeats a materia"
            );
            for (i, a) in groups.iter().enumerate() {
                for b in &groups[i + 1..] {
                    let slot_a = &slots[a["codigo_horario"].as_str().unwrap()];
                    let slot_b = &slots[b["codigo_horario"].as_str().unwrap()];
                    assert!(
                        !overlaps(slot_a, slot_b),
                        "student {student}: {} overlaps {}",
                        a["codigo_grupo"],
                        b["codigo_grupo"]
                    );
                }
            }
        }
    }

    #[test]
    fn catalog_has_every_row() {
        let spec = spec(12, 4);
        let catalog = build(&spec);
        assert_eq!(catalog["estudiantes"].as_array().unwrap().len(), 12);
        assert_eq!(catalog["grupos"].as_array().unwrap().len(), 12);
        assert_eq!(catalog["materias"].as_array().unwrap().len(), 12);
        assert_eq!(catalog["estudiantes"][0]["registro_academico"], "B00000");
        assert_eq!(catalog["estudiantes"][11]["registro_academico"], "B00011");
        assert_eq!(catalog["periodos"][0]["codigo_periodo"], PERIODO);
        assert_eq!(catalog["periodos"][0]["estado"], "ACTIVO");
    }

    #[test]
    fn cupo_covers_every_student() {
        let spec = spec(2000, 50);
        let cupo = group_cupo(&spec);
        let mut load: HashMap<String, usize> = HashMap::new();
        for student in 0..spec.students {
            for code in student_groups(student, spec.groups_per_family) {
                *load.entry(code).or_default() += 1;
            }
        }
        let fullest = load.values().max().copied().unwrap();
        assert!(fullest <= cupo, "{fullest} students for {cupo} seats");
        assert_eq!(load.len(), FAMILIES * spec.groups_per_family);
    }
}
