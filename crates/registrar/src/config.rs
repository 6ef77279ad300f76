//! Typed configuration from environment variables (and an optional `.env` file). A malformed
//! value stops start-up with a message that names the variable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

use crate::domain::enrollment::EnrollmentRules;

/// The embedded database used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://registrar.db";

/// Every setting, with the environment variable of each field named in upper case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: String,
    pub database_pool_max: u32,
    /// Seconds a request waits for a pooled connection.
    pub database_acquire_timeout: u64,
    /// Milliseconds a PostgreSQL statement may run before the server cancels it.
    pub database_statement_timeout_ms: u64,
    pub redis_url: Option<String>,
    /// Milliseconds to wait for a Redis connection.
    pub redis_connect_timeout_ms: u64,
    /// Milliseconds to wait for a Redis reply.
    pub redis_response_timeout_ms: u64,
    /// Text put before every Redis key, so deployments sharing one Redis keep apart.
    pub redis_key_prefix: String,
    /// Origins allowed by CORS, comma-separated; `*` allows any origin without credentials.
    pub allowed_origins: String,
    pub app_name: String,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Jobs each process runs at once.
    pub worker_concurrency: usize,
    /// Inscription jobs each worker runs in one database transaction, so that they share its
    /// statements and its commit.
    pub worker_batch_size: usize,
    /// Seconds a claimed job stays leased before another worker may take it over.
    pub job_lease_seconds: u64,
    /// Milliseconds an idle worker waits before looking for jobs again without a wake-up.
    pub worker_poll_interval_ms: u64,
    /// Seconds a finished job's result stays readable.
    pub result_ttl_seconds: u64,
    pub task_soft_time_limit: u64,
    pub task_time_limit: u64,
    pub task_max_retries: u32,
    /// Base delay in seconds of the exponential retry backoff.
    pub task_retry_delay: f64,
    pub task_retry_backoff_max: f64,
    /// Seconds a graceful shutdown waits for running jobs before returning them to the queue.
    pub shutdown_grace_seconds: u64,
    pub max_grupos_por_solicitud: usize,
    pub max_materias_por_periodo: usize,
    pub enforce_enrollment_window: bool,
    pub reject_passed_materia: bool,
    pub enforce_prerequisites: bool,
    /// Seconds a request may take, reading its body included, before the response is 408.
    pub request_timeout_seconds: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub admin_token: Option<String>,
    /// Seconds an idempotency record lives.
    pub idempotency_ttl_seconds: u64,
    /// Base URL of the billing service that assesses fees; unset records the step as
    /// skipped.
    pub billing_url: Option<String>,
    /// Base URL of the service notified of each completed enrollment; unset records the
    /// step as skipped.
    pub notification_url: Option<String>,
    /// Attempts of a saga step that calls a participant (and of each compensation) before
    /// the saga compensates (or, for a compensation, waits for an operator).
    pub saga_step_attempts: u32,
    /// Hours a finished saga is kept before the periodic cleanup deletes it.
    pub saga_ttl_hours: u64,
    /// Overrides of breaker settings: `name:key=value,key=value;name:...` with keys
    /// `failure_threshold`, `recovery_timeout`, `success_threshold`, `timeout` and
    /// `half_open_permits` (times in seconds).
    pub circuit_breakers: String,
    /// Seconds the oldest waiting job may wait before `/health` reports the queue backlogged.
    pub queue_backlog_alert_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8003,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_pool_max: 10,
            database_acquire_timeout: 10,
            database_statement_timeout_ms: 30_000,
            redis_url: None,
            redis_connect_timeout_ms: 2_000,
            redis_response_timeout_ms: 1_000,
            redis_key_prefix: String::new(),
            allowed_origins: "*".to_owned(),
            app_name: "Inscription Microservice".to_owned(),
            log_level: "info".to_owned(),
            log_format: LogFormat::Json,
            worker_concurrency: 4,
            worker_batch_size: 32,
            job_lease_seconds: 30,
            worker_poll_interval_ms: 1_000,
            result_ttl_seconds: 3_600,
            task_soft_time_limit: 300,
            task_time_limit: 600,
            task_max_retries: 5,
            task_retry_delay: 10.0,
            task_retry_backoff_max: 300.0,
            shutdown_grace_seconds: 10,
            max_grupos_por_solicitud: 8,
            max_materias_por_periodo: 8,
            enforce_enrollment_window: false,
            reject_passed_materia: true,
            enforce_prerequisites: true,
            request_timeout_seconds: 60,
            max_body_bytes: 256 * 1024,
            admin_token: None,
            idempotency_ttl_seconds: 3_600,
            billing_url: None,
            notification_url: None,
            saga_step_attempts: 3,
            saga_ttl_hours: 24,
            circuit_breakers: String::new(),
            queue_backlog_alert_seconds: 120,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the configuration from the process environment, after loading `.env` if present.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_figment(Figment::from(Serialized::defaults(Self::default())).merge(env_source()))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(|e| {
            let key = e
                .path
                .first()
                .map(|k| k.to_uppercase())
                .unwrap_or_else(|| "configuration".to_owned());
            ConfigError(format!("{key}: {}", e.kind))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("WORKER_CONCURRENCY", self.worker_concurrency as u64),
            ("WORKER_BATCH_SIZE", self.worker_batch_size as u64),
            ("JOB_LEASE_SECONDS", self.job_lease_seconds),
            ("DATABASE_POOL_MAX", u64::from(self.database_pool_max)),
            (
                "MAX_GRUPOS_POR_SOLICITUD",
                self.max_grupos_por_solicitud as u64,
            ),
            ("MAX_BODY_BYTES", self.max_body_bytes as u64),
            ("TASK_TIME_LIMIT", self.task_time_limit),
            ("IDEMPOTENCY_TTL_SECONDS", self.idempotency_ttl_seconds),
            ("SAGA_STEP_ATTEMPTS", u64::from(self.saga_step_attempts)),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{key}: must be greater than 0")));
            }
        }
        let max_ok = self.task_retry_backoff_max.is_finite() && self.task_retry_backoff_max >= 0.0;
        if !max_ok {
            return Err(ConfigError(
                "TASK_RETRY_BACKOFF_MAX: must be a non-negative number of seconds".into(),
            ));
        }
        if self.is_postgres() && self.database_pool_max < 2 {
            return Err(ConfigError(
                "DATABASE_POOL_MAX: must be at least 2 on PostgreSQL, because one connection \
                 listens for job notifications"
                    .into(),
            ));
        }
        if let Some(url) = &self.redis_url
            && redis::parse_redis_url(url).is_none()
        {
            return Err(ConfigError(
                "REDIS_URL: must be a redis://, rediss:// or unix:// URL".into(),
            ));
        }
        if !self.task_retry_delay.is_finite() || self.task_retry_delay < 0.0 {
            return Err(ConfigError(
                "TASK_RETRY_DELAY: must be a non-negative number of seconds".into(),
            ));
        }
        let scheme_ok = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|s| self.database_url.starts_with(s));
        if !scheme_ok {
            return Err(ConfigError(
                "DATABASE_URL: must start with sqlite:, postgres: or postgresql:".into(),
            ));
        }
        for (key, url) in [
            ("BILLING_URL", &self.billing_url),
            ("NOTIFICATION_URL", &self.notification_url),
        ] {
            if let Some(url) = url
                && !url.starts_with("http://")
            {
                return Err(ConfigError(format!(
                    "{key}: must be an http:// URL (the build has no TLS client; put a local proxy in front of an https service)"
                )));
            }
        }
        if let Err(e) = parse_breaker_overrides(&self.circuit_breakers) {
            return Err(ConfigError(format!("CIRCUIT_BREAKERS: {e}")));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(ConfigError(format!(
                "LOG_LEVEL: {e}; use a level such as info or a filter such as info,sqlx=warn"
            )));
        }
        if let Some(token) = &self.admin_token
            && token.is_empty()
        {
            return Err(ConfigError(
                "ADMIN_TOKEN: must not be empty; unset it to allow loopback clients only".into(),
            ));
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    pub fn enrollment_rules(&self) -> EnrollmentRules {
        EnrollmentRules {
            max_materias_por_periodo: self.max_materias_por_periodo,
            reject_passed_materia: self.reject_passed_materia,
            enforce_prerequisites: self.enforce_prerequisites,
            enforce_enrollment_window: self.enforce_enrollment_window,
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_seconds)
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

/// Selects the environment variables that map onto [`Config`] and ignores the others.
fn env_source() -> Env {
    let keys: Vec<String> = serde_json::to_value(Config::default())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    Env::raw().filter(move |k| keys.iter().any(|key| k == key.as_str()))
}

/// The breakers that `CIRCUIT_BREAKERS` may name.
pub const BREAKER_NAMES: [&str; 6] = [
    "database",
    "redis",
    "billing",
    "notification",
    "celery_stats",
    "health_check",
];

/// One breaker's overridden settings, as `(key, value)` pairs.
pub type BreakerOverride = (String, Vec<(String, f64)>);

/// Parses `CIRCUIT_BREAKERS`: `name:key=value,key=value;name:...`. Keys are checked here;
/// names are checked against the breakers that exist when they are built.
pub fn parse_breaker_overrides(text: &str) -> Result<Vec<BreakerOverride>, String> {
    const KEYS: [&str; 5] = [
        "failure_threshold",
        "recovery_timeout",
        "success_threshold",
        "timeout",
        "half_open_permits",
    ];
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, settings) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` must look like name:key=value"))?;
        let mut pairs = Vec::new();
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("`{setting}` must look like key=value"))?;
            let key = key.trim();
            if !KEYS.contains(&key) {
                return Err(format!(
                    "unknown key `{key}`; use one of {}",
                    KEYS.join(", ")
                ));
            }
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{key}` must be a number"))?;
            let is_time = matches!(key, "recovery_timeout" | "timeout");
            let ok = if is_time {
                value.is_finite() && value > 0.0 && value <= 86_400.0
            } else {
                value.fract() == 0.0 && (1.0..=1_000_000.0).contains(&value)
            };
            if !ok {
                return Err(if is_time {
                    format!("`{key}` must be a number of seconds above 0 and at most 86400")
                } else {
                    format!("`{key}` must be a whole number from 1 to 1000000")
                });
            }
            pairs.push((key.to_owned(), value));
        }
        let name = name.trim();
        if !BREAKER_NAMES.contains(&name) {
            return Err(format!(
                "no breaker is named `{name}`; use one of {}",
                BREAKER_NAMES.join(", ")
            ));
        }
        out.push((name.to_owned(), pairs));
    }
    Ok(out)
}

/// Masks the password of a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn with(key: &str, value: &str) -> Result<Config, ConfigError> {
        let env = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::default(key, value));
        Config::from_figment(env)
    }

    #[test]
    fn malformed_port_names_the_variable() {
        let err = with("port", "eighty").unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
    }

    #[test]
    fn unknown_database_scheme_is_rejected() {
        let err = with("database_url", "mysql://x").unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn enrollment_switches_reach_rules() {
        for key in ["enforce_prerequisites", "reject_passed_materia"] {
            let figment = Figment::from(Serialized::defaults(Config::default()))
                .merge(Serialized::default(key, false));
            let rules = Config::from_figment(figment)
                .expect("valid")
                .enrollment_rules();
            let value = match key {
                "enforce_prerequisites" => rules.enforce_prerequisites,
                _ => rules.reject_passed_materia,
            };
            assert!(!value, "{key} = false did not reach the rules");
        }
    }

    #[test]
    fn password_is_masked() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://registrar.db"), "sqlite://registrar.db");
    }
}
