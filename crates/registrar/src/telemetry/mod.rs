//! Log output (one JSON object per line by default, or human-readable text), the ids of the
//! request or job being served, and the Prometheus metrics.

pub mod context;
mod json;
pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. `LOG_LEVEL` takes a level or a full filter directive.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match config.log_format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if result.is_err() {
        eprintln!("a log subscriber was already installed; keeping it");
    }
}
