//! Sending one request through a goose user: goose counts it in its own metrics, and the
//! run's [`Recorder`] gets a [`Sample`] with the full response time and body size.

use std::time::{Duration, Instant};

use goose::prelude::*;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use crate::sample::{Recorder, Sample};
use crate::target::endpoint;

/// State that every user of a run shares.
pub struct RunContext {
    pub base: Url,
    pub recorder: Recorder,
    /// Users of the whole run.
    pub all_users: usize,
    /// No job is enqueued after this instant.
    pub enqueue_deadline: Instant,
    /// No status poll is sent after this instant; a job still running then is unfinished.
    pub poll_deadline: Instant,
    pub request_timeout: Duration,
    /// Pause between two status polls of one job.
    pub poll_interval: Duration,
}

impl RunContext {
    pub fn may_enqueue(&self) -> bool {
        Instant::now() < self.enqueue_deadline
    }

    pub fn may_poll(&self) -> bool {
        Instant::now() < self.poll_deadline
    }
}

/// The scenario that sends a request, for the JTL `threadName` and `grpThreads` columns.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub scenario: &'static str,
    /// Users that run this scenario.
    pub scenario_users: usize,
}

/// One request to send.
pub struct Call<'a> {
    /// Request type in the reports, such as `enqueue async-by-groups`.
    pub label: &'static str,
    pub method: GooseMethod,
    /// API path under the base URL.
    pub path: &'a str,
    pub body: Option<&'a Value>,
    pub headers: &'a [(&'a str, &'a str)],
    /// Status codes that count as success.
    pub expected: &'a [u16],
}

/// The response to a [`Call`].
pub struct Reply {
    /// `None` when no response arrived.
    pub status: Option<u16>,
    pub headers: HeaderMap,
    pub text: String,
    /// Whether the status was one of the expected codes.
    pub ok: bool,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Describes an unexpected status, with the envelope's `error_code` when there is one.
fn unexpected_status(expected: &[u16], status: u16, body: &str) -> String {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error_code"].as_str().map(str::to_owned));
    match code {
        Some(code) => format!("expected {expected:?}, got {status} ({code})"),
        None => format!("expected {expected:?}, got {status}"),
    }
}

/// Sends `call` and records it. A request that got no response, or a status outside
/// `expected`, is marked failed in goose's metrics and in the sample, and the caller still
/// gets the [`Reply`] to count it.
pub async fn send(user: &mut GooseUser, ctx: &RunContext, origin: Origin, call: Call<'_>) -> Reply {
    let url = endpoint(&ctx.base, call.path);
    let thread = format!("{} 1-{}", origin.scenario, user.weighted_users_index + 1);
    let mut sample = Sample {
        started_epoch_ms: 0,
        offset: Duration::ZERO,
        elapsed: Duration::ZERO,
        latency: Duration::ZERO,
        label: call.label,
        url: url.to_string(),
        status: None,
        success: false,
        failure: String::new(),
        bytes: 0,
        sent_bytes: 0,
        thread,
        group_users: origin.scenario_users,
        all_users: ctx.all_users,
    };
    let mut reply = Reply {
        status: None,
        headers: HeaderMap::new(),
        text: String::new(),
        ok: false,
    };

    let mut builder = match user.get_request_builder(&call.method, url.as_str()) {
        Ok(builder) => builder,
        Err(e) => {
            sample.failure = format!("request not built: {e}");
            ctx.recorder.record(sample);
            return reply;
        }
    };
    for (name, value) in call.headers {
        builder = builder.header(*name, *value);
    }
    if let Some(body) = call.body {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        sample.sent_bytes = bytes.len() as u64;
        builder = builder.header(CONTENT_TYPE, "application/json").body(bytes);
    }
    let request = GooseRequest::builder()
        .method(call.method)
        .path(url.as_str())
        .name(call.label)
        .set_request_builder(builder)
        .build();

    let sent_at = Instant::now();
    (sample.started_epoch_ms, sample.offset) = ctx.recorder.stamp(sent_at);
    let result = user.request(request).await;
    sample.latency = sent_at.elapsed();
    let goose = match result {
        Ok(goose) => goose,
        Err(e) => {
            sample.elapsed = sample.latency;
            sample.failure = format!("request failed: {e}");
            ctx.recorder.record(sample);
            return reply;
        }
    };
    let mut metric = goose.request;
    let response = match goose.response {
        Ok(response) => response,
        Err(e) => {
            sample.elapsed = sample.latency;
            sample.failure = format!("request failed: {e}");
            ctx.recorder.record(sample);
            return reply;
        }
    };

    let status = response.status().as_u16();
    reply.status = Some(status);
    sample.status = Some(status);
    reply.headers = response.headers().clone();
    match response.text().await {
        Ok(text) => reply.text = text,
        Err(e) => sample.failure = format!("reading the response body failed: {e}"),
    }
    sample.elapsed = sent_at.elapsed();
    sample.bytes = reply.text.len() as u64;

    reply.ok = call.expected.contains(&status) && sample.failure.is_empty();
    if reply.ok {
        if !metric.success {
            // Goose counts 4xx as failures, but some are the expected response here.
            let _ = user.set_success(&mut metric);
        }
    } else {
        if sample.failure.is_empty() {
            sample.failure = unexpected_status(call.expected, status, &reply.text);
        }
        // `set_failure` returns an error to end the transaction; the caller counts instead.
        let _ = user.set_failure(
            &sample.failure,
            &mut metric,
            Some(&reply.headers),
            Some(&reply.text),
        );
    }
    sample.success = reply.ok;
    ctx.recorder.record(sample);
    reply
}

/// Builds the HTTP client of every user: no proxy and no redirects, so that each request goes
/// to the base URL and nowhere else, whatever proxy the environment sets.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("registrar-loadgen/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unexpected_status_names_error_code() {
        let body = r#"{"error": true, "error_code": "TASK_NOT_FOUND"}"#;
        assert_eq!(
            unexpected_status(&[200], 404, body),
            "expected [200], got 404 (TASK_NOT_FOUND)"
        );
        assert_eq!(
            unexpected_status(&[202, 409], 500, "oops"),
            "expected [202, 409], got 500"
        );
    }
}
