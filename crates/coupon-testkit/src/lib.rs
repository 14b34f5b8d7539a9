//! Test helpers shared by the adapter, API and black-box tests. Dev-only: no production crate
//! depends on it.
//!
//! Every test runs against the real services, isolated by name: its own PostgreSQL database
//! (cloned from a migrated template, so creating one takes milliseconds), its own Redis key prefix
//! and its own Kafka topic names. The servers come from the usual `DATABASE_*`, `REDIS_*` and
//! `KAFKA_*` variables (defaults: the local stack). A server that is down fails the test; nothing
//! is skipped.

pub mod broker;
pub mod certificates;
mod database;
pub mod process;
pub mod redis_cluster;

use std::collections::HashMap;

use coupon_runtime::settings::{Settings, SettingsError};

pub use database::{TEST_DB_PREFIX, TestDatabase};

/// Admin token configured for every test environment.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The environment one test runs in: the process's variables, overridden so that the test has
/// its own database, Redis prefix and topics, ports picked by the OS, and quiet logs.
#[derive(Debug)]
pub struct TestEnv {
    pub database: TestDatabase,
    pub vars: HashMap<String, String>,
}

impl TestEnv {
    /// A fresh environment with a migrated database.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable: a missing service fails the test.
    pub async fn new() -> Self {
        let database = TestDatabase::migrated().await;
        Self::with_database(database)
    }

    /// The same, around a given database (e.g. an empty one).
    pub fn with_database(database: TestDatabase) -> Self {
        let id = unique_suffix();
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_owned(), v);
        };
        set("DATABASE_NAME", database.name().to_owned());
        set("REDIS_KEY_PREFIX", format!("test:{id}:"));
        set("HTTP_PORT", "0".into());
        set("WORKER_ADMIN_PORT", "0".into());
        set("SCHEDULER_ADMIN_PORT", "0".into());
        set("HTTP_WORKERS", "2".into());
        set("SHUTDOWN_TIMEOUT", "5".into());
        set("COUPON_ADMIN_TOKENS", ADMIN_TOKEN.into());
        set("COUPON_RATE_LIMIT_ENABLED", "false".into());
        set("LOG_FORMAT", "pretty".into());
        if std::env::var_os("LOG_LEVEL").is_none() {
            set("LOG_LEVEL", "warn".into());
        }
        for (key, base) in [
            ("KAFKA_TOPIC_COUPON_ISSUED", "coupon.issued"),
            ("KAFKA_TOPIC_COUPON_RESERVED", "coupon.reserved"),
            ("KAFKA_TOPIC_COUPON_USED", "coupon.used"),
            ("KAFKA_TOPIC_COUPON_CANCELLED", "coupon.cancelled"),
            ("KAFKA_TOPIC_COUPON_EXPIRED", "coupon.expired"),
            ("KAFKA_TOPIC_COUPON_BUDGET", "coupon.budget"),
            ("KAFKA_TOPIC_PAYMENT_COMPLETED", "payment.completed.v1"),
            ("KAFKA_TOPIC_PAYMENT_FAILED", "payment.failed.v1"),
            ("KAFKA_TOPIC_ORDER_CANCELLED", "order.cancelled"),
            ("KAFKA_TOPIC_COUPON_ISSUE_REQUESTED", "coupon.issue-requested"),
        ] {
            set(key, format!("{base}.t{id}"));
        }
        Self { database, vars }
    }

    /// The same database, Redis prefix and topics with one variable changed: a second instance of
    /// the service configured differently (e.g. with a dependency that is down).
    #[must_use]
    pub fn clone_with(&self, key: &str, value: impl Into<String>) -> Self {
        Self { database: self.database.clone(), vars: self.vars.clone() }.set(key, value)
    }

    /// Overrides one variable.
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    /// The parsed settings of this environment.
    ///
    /// # Errors
    /// When a variable is invalid (tests of configuration errors rely on it).
    pub fn try_settings(&self) -> Result<Settings, SettingsError> {
        Settings::from_env(self.vars.clone())
    }

    /// The parsed settings.
    ///
    /// # Panics
    /// When a variable is invalid.
    pub fn settings(&self) -> Settings {
        match self.try_settings() {
            Ok(s) => s,
            Err(e) => panic!("test settings are invalid: {e}"),
        }
    }
}

/// The Redis of the test run, `host:port` (`REDIS_HOST`, `REDIS_PORT`; default the local stack).
pub fn redis_node() -> String {
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into());
    format!("{host}:{port}")
}

/// A short random suffix for names (databases, prefixes, topics).
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
