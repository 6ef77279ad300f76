//! The registration rush: N students of the benchmark catalog each enroll in three groups
//! through `POST /api/v1/queue/inscripciones/async-by-groups`, and each user polls
//! `POST /api/v1/queue/tasks/status/multiple` with its job's group task ids until every view
//! is finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use goose::prelude::*;
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};

use crate::catalog::{self, FAMILIES, PERIODO};
use crate::invariants::JobRecord;
use crate::jobs::{JobLog, wait_jobs};
use crate::request::{Call, Origin, RunContext, send};
use crate::scenarios::{ENQUEUE_BY_GROUPS, group_task_ids};

/// Shared state of one rush.
pub struct RushState {
    pub ctx: Arc<RunContext>,
    pub students: usize,
    pub groups_per_family: usize,
    /// Students each user enqueues before it polls their jobs together.
    pub batch_size: usize,
    next: AtomicUsize,
    pub jobs: JobLog,
}

impl RushState {
    pub fn new(
        ctx: Arc<RunContext>,
        students: usize,
        groups_per_family: usize,
        batch_size: usize,
    ) -> Self {
        Self {
            ctx,
            students,
            groups_per_family,
            batch_size,
            next: AtomicUsize::new(0),
            jobs: JobLog::default(),
        }
    }
}

/// Maximum `--batch-size`: three group task ids per student must fit in one status
/// request, which the service caps at 500 ids.
pub const MAX_BATCH: usize = 100;
const _: () = assert!(MAX_BATCH * FAMILIES <= 500);

/// Returns how many times each user runs the rush transaction so that `users` users, each
/// claiming up to `batch` students per run, cover `students` students. Surplus runs do nothing.
pub fn iterations_per_user(students: usize, users: usize, batch: usize) -> usize {
    students.div_ceil(users.max(1) * batch.max(1))
}

/// One enrollment whose job the user follows.
struct Enqueued {
    ra: String,
    grupos: Vec<String>,
    task_ids: Vec<String>,
}

/// Enqueues one student's enrollment. Returns the group task ids, or why no job came of it.
async fn enqueue(
    user: &mut GooseUser,
    state: &RushState,
    origin: Origin,
    ra: &str,
    grupos: &[String],
) -> Result<Vec<String>, String> {
    let body = json!({ "registro_academico": ra, "codigo_periodo": PERIODO, "grupos": grupos });
    state.jobs.sending();
    let reply = send(
        user,
        &state.ctx,
        origin,
        Call {
            label: ENQUEUE_BY_GROUPS,
            method: GooseMethod::Post,
            path: "/api/v1/queue/inscripciones/async-by-groups",
            body: Some(&body),
            headers: &[],
            expected: &[202],
        },
    )
    .await;
    let ids = reply.json().as_ref().and_then(group_task_ids);
    match (ids, reply.status) {
        (Some(ids), _) if reply.ok && ids.len() == FAMILIES => Ok(ids),
        (Some(ids), _) if reply.ok => {
            Err(format!("{} group_tasks, expected {FAMILIES}", ids.len()))
        }
        (_, Some(status)) => Err(format!("enqueue returned {status}")),
        (_, None) => Err("enqueue got no response".to_owned()),
    }
}

/// Claims up to `batch_size` students, enrolls each, then follows all their jobs to the end
/// with one status request per poll.
pub async fn enroll_batch(user: &mut GooseUser, state: &RushState, origin: Origin) {
    let mut enqueued = Vec::new();
    for _ in 0..state.batch_size {
        let student = state.next.fetch_add(1, Ordering::Relaxed);
        if student >= state.students {
            break;
        }
        if !state.ctx.may_enqueue() {
            state.jobs.not_enqueued("time was up".into());
            continue;
        }
        let ra = catalog::student_id(student);
        let grupos = catalog::student_groups(student, state.groups_per_family);
        match enqueue(user, state, origin, &ra, &grupos).await {
            Ok(task_ids) => enqueued.push(Enqueued {
                ra,
                grupos,
                task_ids,
            }),
            Err(reason) => state.jobs.not_enqueued(reason),
        }
    }

    let jobs: Vec<Vec<String>> = enqueued.iter().map(|e| e.task_ids.clone()).collect();
    wait_jobs(user, &state.ctx, origin, &jobs, |index, outcome| {
        let job = &enqueued[index];
        state.jobs.finished(JobRecord {
            registro_academico: job.ra.clone(),
            codigo_periodo: PERIODO.to_owned(),
            grupos: job.grupos.clone(),
            outcome,
        });
    })
    .await;
}

/// Makes the benchmark period `ACTIVO` through the API when it is not, and checks that it
/// has no inscription yet, so that every rejected job can be checked to have left no row.
/// Returns whether it called `activar`.
pub async fn prepare_period(client: &Client, base: &Url) -> anyhow::Result<bool> {
    let get = |path: String| {
        let url = crate::target::endpoint(base, &path);
        async move {
            let response = client
                .get(url.clone())
                .send()
                .await
                .with_context(|| format!("GET {url} failed; is the service running?"))?;
            anyhow::Ok((url, response))
        }
    };

    let (url, response) = get(format!("/api/v1/periodos/{PERIODO}")).await?;
    if response.status() == StatusCode::NOT_FOUND {
        bail!(
            "period {PERIODO} not found: write a catalog with `registrar-loadgen catalog` \
             and load it with `registrar import`"
        );
    }
    if !response.status().is_success() {
        bail!("GET {url} returned {}", response.status());
    }
    let periodo: Value = response.json().await.context("invalid period JSON")?;

    let (url, response) = get(format!("/api/v1/inscripciones/periodo/{PERIODO}")).await?;
    if !response.status().is_success() {
        bail!("GET {url} returned {}", response.status());
    }
    let listing: Value = response.json().await.context("invalid listing JSON")?;
    let existing = listing["inscripciones"].as_array().map_or(0, Vec::len);
    if existing > 0 {
        bail!(
            "period {PERIODO} already has {existing} inscriptions: run the rush on a freshly \
             imported catalog"
        );
    }

    if periodo["estado"] == "ACTIVO" {
        return Ok(false);
    }
    let url = crate::target::endpoint(base, &format!("/api/v1/periodos/{PERIODO}/activar"));
    let response = client.post(url.clone()).send().await?;
    if !response.status().is_success() {
        bail!("POST {url} returned {}", response.status());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_cover_every_student() {
        let cases = [
            (2000, 50, 1),
            (2000, 50, 8),
            (7, 3, 2),
            (1, 10, 5),
            (10, 10, 1),
            (0, 4, 1),
        ];
        for (students, users, batch) in cases {
            let iterations = iterations_per_user(students, users, batch);
            let per_run = users * batch;
            assert!(
                iterations * per_run >= students,
                "{students}/{users}/{batch}"
            );
            assert!(
                iterations == 0 || (iterations - 1) * per_run < students,
                "{students}/{users}/{batch}: {iterations} is more than needed"
            );
        }
    }
}
