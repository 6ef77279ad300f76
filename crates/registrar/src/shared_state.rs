//! The process's one Redis connection, for state that every process must share at memory
//! speed. It reconnects by itself after Redis restarts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::redact_url;

#[derive(Clone)]
pub struct RedisHandle {
    manager: ConnectionManager,
    url: String,
    prefix: String,
}

impl RedisHandle {
    /// Creates the connection manager without waiting for Redis, so a process starts while
    /// Redis is down. The first command connects, and `/health` reports the outcome.
    pub fn connect(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            manager,
            url: redact_url(url),
            prefix: String::new(),
        })
    }

    /// Puts `prefix` before every key this handle names, so that deployments (or tests)
    /// sharing one Redis keep apart.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The Redis key for `name`, with the deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Returns a clone of the shared manager. Clones multiplex over one connection.
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.manager.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Returns the URL with its password masked, for logs.
    pub fn display_url(&self) -> &str {
        &self.url
    }
}
