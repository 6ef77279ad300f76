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
use crate::jobs::{JobLog, wait_views};
use crate::request::{Call, Origin, RunContext, send};
use crate::scenarios::{ENQUEUE_BY_GROUPS, group_task_ids};

/// Shared state of one rush.
pub struct RushState {
    pub ctx: Arc<RunContext>,
    pub students: usize,
    pub groups_per_family: usize,
    next: AtomicUsize,
    pub jobs: JobLog,
}

impl RushState {
    pub fn new(ctx: Arc<RunContext>, students: usize, groups_per_family: usize) -> Self {
        Self {
            ctx,
            students,
            groups_per_family,
            next: AtomicUsize::new(0),
            jobs: JobLog::default(),
        }
    }
}

/// Returns how many times each user runs the rush transaction so that `users` users cover
/// `students` students; each run claims the next student, and surplus runs do nothing.
pub fn iterations_per_user(students: usize, users: usize) -> usize {
    students.div_ceil(users.max(1))
}

/// Claims the next student, enrolls them and follows the job to the end.
pub async fn enroll_next(user: &mut GooseUser, state: &RushState, origin: Origin) {
    let student = state.next.fetch_add(1, Ordering::Relaxed);
    if student >= state.students {
        return;
    }
    let ra = catalog::student_id(student);
    let grupos = catalog::student_groups(student, state.groups_per_family);
    if !state.ctx.may_enqueue() {
        state.jobs.not_enqueued("time was up".into());
        return;
    }

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
    let ids = match ids {
        Some(ids) if reply.ok && ids.len() == FAMILIES => ids,
        Some(ids) if reply.ok => {
            state
                .jobs
                .not_enqueued(format!("{} group_tasks, expected {FAMILIES}", ids.len()));
            return;
        }
        _ => {
            let reason = match reply.status {
                Some(status) => format!("enqueue returned {status}"),
                None => "enqueue got no response".to_owned(),
            };
            state.jobs.not_enqueued(reason);
            return;
        }
    };

    let outcome = wait_views(user, &state.ctx, origin, &ids).await;
    state.jobs.finished(JobRecord {
        registro_academico: ra,
        codigo_periodo: PERIODO.to_owned(),
        grupos,
        outcome,
    });
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
        for (students, users) in [(2000, 50), (7, 3), (1, 10), (10, 10), (0, 4)] {
            let iterations = iterations_per_user(students, users);
            assert!(iterations * users >= students, "{students}/{users}");
            assert!(
                iterations == 0 || (iterations - 1) * users < students,
                "{students}/{users}: {iterations} is more than needed"
            );
        }
    }
}
