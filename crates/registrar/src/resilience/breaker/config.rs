//! Per-breaker settings and the defaults for the breakers that exist from startup.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Margin added to `call_timeout` before a half-open probe slot counts as abandoned, so a
/// probe that is still finishing its last reply keeps its slot.
pub const PROBE_LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Thresholds and timeouts of one breaker. Durations deserialize from seconds, which may
/// be fractional (`recovery_timeout = 0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures in `closed` that open the breaker.
    pub failure_threshold: u32,
    /// Time in `open` before the next call moves the breaker to `half_open`.
    #[serde(deserialize_with = "seconds")]
    pub recovery_timeout: Duration,
    /// Consecutive probe successes in `half_open` that close the breaker.
    pub success_threshold: u32,
    /// Deadline applied to every wrapped call. A call that exceeds it counts as a failure.
    #[serde(deserialize_with = "seconds", alias = "timeout")]
    pub call_timeout: Duration,
    /// Probe calls admitted at once in `half_open`.
    #[serde(default = "one")]
    pub half_open_permits: u32,
}

fn one() -> u32 {
    1
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(value).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid duration {value}: expected a non-negative number of seconds"
        ))
    })
}

const fn config(
    failure_threshold: u32,
    recovery_secs: u64,
    success_threshold: u32,
    timeout_secs: u64,
) -> BreakerConfig {
    BreakerConfig {
        failure_threshold,
        recovery_timeout: Duration::from_secs(recovery_secs),
        success_threshold,
        call_timeout: Duration::from_secs(timeout_secs),
        half_open_permits: 1,
    }
}

/// The breakers that exist from startup, with their default settings.
pub const DEFAULT_BREAKERS: [(&str, BreakerConfig); 6] = [
    ("database", config(3, 30, 2, 15)),
    ("redis", config(5, 10, 3, 5)),
    ("billing", config(3, 60, 2, 10)),
    ("notification", config(5, 60, 2, 10)),
    ("celery_stats", config(5, 60, 3, 10)),
    ("health_check", config(5, 60, 3, 10)),
];

impl BreakerConfig {
    /// Returns the default settings of a breaker that exists from startup.
    pub fn default_for(name: &str) -> Option<Self> {
        DEFAULT_BREAKERS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, config)| *config)
    }

    /// Time after which a half-open probe slot whose call never reported back is released.
    pub fn probe_lease(&self) -> Duration {
        self.call_timeout + PROBE_LEASE_MARGIN
    }

    /// Checks that every count is at least 1 and the call timeout is not zero.
    pub fn validate(&self) -> Result<(), String> {
        let counts = [
            ("failure_threshold", self.failure_threshold),
            ("success_threshold", self.success_threshold),
            ("half_open_permits", self.half_open_permits),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(format!("{field} must be at least 1, got 0"));
            }
        }
        if self.call_timeout.is_zero() {
            return Err("call_timeout must be greater than 0 seconds".to_owned());
        }
        Ok(())
    }

    pub(crate) fn report(&self) -> ConfigReport {
        ConfigReport {
            failure_threshold: self.failure_threshold,
            recovery_timeout: self.recovery_timeout.as_secs_f64(),
            success_threshold: self.success_threshold,
            timeout: self.call_timeout.as_secs_f64(),
            half_open_permits: self.half_open_permits,
        }
    }
}

/// The `config` object of the stats, with durations in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigReport {
    pub failure_threshold: u32,
    pub recovery_timeout: f64,
    pub success_threshold: u32,
    pub timeout: f64,
    pub half_open_permits: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserializes_fractional_seconds() {
        let config: BreakerConfig = serde_json::from_str(
            r#"{"failure_threshold":3,"recovery_timeout":0.5,"success_threshold":2,"timeout":1.25}"#,
        )
        .expect("valid config");

        assert_eq!(config.recovery_timeout, Duration::from_millis(500));
        assert_eq!(config.call_timeout, Duration::from_millis(1250));
        assert_eq!(config.half_open_permits, 1);
    }

    #[test]
    fn config_rejects_negative_seconds() {
        let result: Result<BreakerConfig, _> = serde_json::from_str(
            r#"{"failure_threshold":3,"recovery_timeout":-1,"success_threshold":2,"call_timeout":1}"#,
        );

        assert!(result.is_err());
    }

    #[test]
    fn defaults_cover_startup_breakers() {
        let database = BreakerConfig::default_for("database").expect("database default");
        assert_eq!(database.failure_threshold, 3);
        assert_eq!(database.recovery_timeout, Duration::from_secs(30));
        assert_eq!(database.success_threshold, 2);
        assert_eq!(database.call_timeout, Duration::from_secs(15));
        assert!(BreakerConfig::default_for("unknown").is_none());
        for (name, config) in DEFAULT_BREAKERS {
            assert_eq!(config.half_open_permits, 1, "{name}");
            assert_eq!(config.validate(), Ok(()), "{name}");
        }
    }
}
