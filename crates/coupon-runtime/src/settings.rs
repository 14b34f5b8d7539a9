//! Settings of the three binaries (SPEC §8), layered with the `config` crate:
//! compiled defaults → optional TOML file (`COUPON_CONFIG_FILE`) → environment variables.
//!
//! Every key is listed once in [`KEYS`] with its default and meaning; README's configuration table
//! mirrors that list (a test keeps them in step). Values are parsed and validated here, once, at
//! start-up: a bad value stops the process with an error naming the variable, never later at the
//! first request. Secrets are `SecretString` so they cannot reach `Debug` output or logs.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};

/// One configuration key: environment variable name, compiled default, meaning.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn key(name: &'static str, default: &'static str, doc: &'static str) -> Key {
    Key { name, default, doc }
}

/// Every setting the service reads. Durations accept a plain integer in the unit named in the
/// description, or a value with a unit (`500ms`, `30s`, `10m`).
pub const KEYS: &[Key] = &[
    key(
        "COUPON_CONFIG_FILE",
        "",
        "Optional TOML file with any of these keys in lower case; the environment overrides it.",
    ),
    key("DATABASE_HOST", "127.0.0.1", "PostgreSQL host."),
    key("DATABASE_PORT", "5432", "PostgreSQL port."),
    key("DATABASE_NAME", "coupon_db", "PostgreSQL database."),
    key("DATABASE_USER", "postgres", "PostgreSQL user."),
    key("DATABASE_PASSWORD", "", "PostgreSQL password (secret)."),
    key("DATABASE_POOL_SIZE", "16", "Connections per pool."),
    key(
        "DATABASE_WORKER_POOL_SIZE",
        "4",
        "api-server: connections of each HTTP worker's own pool, for the reads its request handlers run themselves (wallet, quote).",
    ),
    key(
        "DATABASE_TIMEOUT",
        "5",
        "Seconds to wait for a connection (connect or pool checkout) before answering 503.",
    ),
    key(
        "DATABASE_SSL_MODE",
        "disable",
        "`disable`, `require` (TLS, certificate not checked) or `verify-full` (TLS, trusted certificate for the host).",
    ),
    key("DATABASE_SSL_ROOT_CERT", "", "PEM file of the roots `verify-full` trusts (empty: the system's)."),
    key("REDIS_HOST", "127.0.0.1", "Redis host."),
    key("REDIS_PORT", "6379", "Redis port."),
    key(
        "REDIS_CLUSTER_NODES",
        "",
        "Comma-separated `host:port` members of a Redis Cluster; when set, Redis Cluster is used and `REDIS_HOST`/`REDIS_PORT` are not.",
    ),
    key(
        "REDIS_TLS",
        "false",
        "`true`: TLS to Redis (`rediss://`), the certificate checked against the roots and the host name.",
    ),
    key("REDIS_TLS_CA", "", "PEM file of the roots `REDIS_TLS` trusts (empty: the system's)."),
    key("REDIS_USERNAME", "", "Redis ACL user (empty: the default user)."),
    key("REDIS_PASSWORD", "", "Redis password (secret): the ACL user's, or `requirepass`'s without a user."),
    key(
        "REDIS_POOL_SIZE",
        "32",
        "Most Redis connections per process; the commands of a thread share one (multiplexed), replaced when it fails.",
    ),
    key("REDIS_TIMEOUT", "2", "Seconds to wait for a Redis connection or reply."),
    key("REDIS_KEY_PREFIX", "coupon:", "Prefix of every Redis key (lets tests and tenants share one Redis)."),
    key("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Comma-separated Kafka bootstrap brokers."),
    key("KAFKA_REQUEST_TIMEOUT", "10", "Seconds a Kafka request (and its retries) may take before it fails."),
    key(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "`PLAINTEXT`, `SSL` (TLS, the certificate checked against the roots and the broker's host name) or `SASL_SSL` (TLS and SASL).",
    ),
    key("KAFKA_SSL_CA", "", "PEM file of the roots `SSL`/`SASL_SSL` trust (empty: the system's)."),
    key("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`SASL_SSL`)."),
    key("KAFKA_SASL_USERNAME", "", "SASL user (`SASL_SSL`)."),
    key("KAFKA_SASL_PASSWORD", "", "SASL password (secret; `SASL_SSL`)."),
    key("KAFKA_TOPIC_PARTITIONS", "3", "Partitions of the topics the service creates."),
    key(
        "KAFKA_TOPIC_RETENTION",
        "7",
        "Days of retention.ms of the event topics the service creates (coupon.*, and the consumed ones where it creates them).",
    ),
    key("KAFKA_DLQ_RETENTION", "30", "Days of retention.ms of the {topic}.DLQ topics the service creates."),
    key(
        "KAFKA_REPLICATION_FACTOR",
        "1",
        "Replication factor of the topics the service creates (use 3 on a real cluster).",
    ),
    key("KAFKA_TOPIC_COUPON_ISSUED", "coupon.issued", "Topic of coupon.issued events."),
    key("KAFKA_TOPIC_COUPON_RESERVED", "coupon.reserved", "Topic of coupon.reserved events."),
    key("KAFKA_TOPIC_COUPON_USED", "coupon.used", "Topic of coupon.used events."),
    key("KAFKA_TOPIC_COUPON_CANCELLED", "coupon.cancelled", "Topic of coupon.cancelled events."),
    key("KAFKA_TOPIC_COUPON_EXPIRED", "coupon.expired", "Topic of coupon.expired events."),
    key("KAFKA_TOPIC_COUPON_BUDGET", "coupon.budget", "Topic of coupon.budget-threshold events."),
    key(
        "KAFKA_TOPIC_PAYMENT_COMPLETED",
        "payment.completed.v1",
        "Consumed: payments that confirm a reservation.",
    ),
    key("KAFKA_TOPIC_PAYMENT_FAILED", "payment.failed.v1", "Consumed: payments that release a reservation."),
    key("KAFKA_TOPIC_ORDER_CANCELLED", "order.cancelled", "Consumed: cancelled orders (release or restore)."),
    key(
        "KAFKA_TOPIC_COUPON_ISSUE_REQUESTED",
        "coupon.issue-requested",
        "Consumed: EVENT-type issue requests.",
    ),
    key("HTTP_HOST", "0.0.0.0", "api-server listen address."),
    key("HTTP_PORT", "8080", "api-server port (0 picks a free port)."),
    key("HTTP_WORKERS", "0", "actix-web worker threads; 0 = one per core."),
    key(
        "HTTP_TRUSTED_PROXIES",
        "",
        "Comma-separated IPs or CIDR blocks of the proxies in front of api-server (the gateway, the ingress): only a request from one of them may name the client in X-Forwarded-For.",
    ),
    key("SHUTDOWN_TIMEOUT", "30", "Seconds to drain in-flight work after SIGTERM/SIGINT."),
    key("WORKER_ADMIN_PORT", "9101", "event-worker port for /metrics and /health/* (0 picks a free port)."),
    key("WORKER_OUTBOX_BATCH_SIZE", "1000", "Outbox rows the relay reads and publishes per round."),
    key("WORKER_OUTBOX_RETENTION", "24", "Hours a published outbox row is kept before the relay prunes it."),
    key(
        "WORKER_DEDUPE_RETENTION",
        "30",
        "Days a consumed event's dedupe row (processed_events) is kept; longer than any consumed topic's retention, or a redelivered record could apply twice.",
    ),
    key(
        "WORKER_LEASE_PERIOD",
        "6",
        "Seconds an event-worker's relay or partition lease lasts unrenewed: how soon another pod takes over from a dead one.",
    ),
    key("SCHEDULER_ADMIN_PORT", "9102", "scheduler port for /metrics and /health/* (0 picks a free port)."),
    key(
        "COUPON_RESERVATION_TIMEOUT",
        "10",
        "Minutes a reservation holds a coupon before the timeout job releases it.",
    ),
    key(
        "COUPON_MAX_COUPONS_PER_ORDER",
        "5",
        "Stackable coupons one order may hold at once, 1 to 100 (SPEC §11.4); a non-stackable coupon holds its order alone.",
    ),
    key(
        "COUPON_BUDGET_THRESHOLDS",
        "80,100",
        "Percentages of a policy's budget whose first crossing produces a coupon.budget-threshold event (SPEC §11.5).",
    ),
    key(
        "COUPON_IDEMPOTENCY_TTL",
        "24",
        "Hours an Idempotency-Key and its stored answer are kept (SPEC §11.1); the scheduler's expiry job prunes older keys.",
    ),
    key(
        "COUPON_IDEMPOTENCY_LEASE",
        "30",
        "Seconds a request holding an Idempotency-Key blocks its retries (409 IDEMPOTENCY_IN_PROGRESS) if it dies before answering.",
    ),
    key(
        "COUPON_ADMIN_TOKENS",
        "",
        "Comma-separated bearer tokens for admin endpoints, 16+ characters each (secret).",
    ),
    key("COUPON_TIMEZONE", "UTC", "Business time zone (IANA name) for expiry dates and daily statistics."),
    key(
        "COUPON_RATE_LIMIT_ENABLED",
        "true",
        "Rate limits and code-guessing blocks (switch off for load tests).",
    ),
    key("COUPON_RATE_LIMIT_PER_MINUTE", "5", "Issuing requests per user per minute."),
    key("COUPON_RATE_LIMIT_PER_HOUR", "20", "Issuing requests per user per hour."),
    key("COUPON_VALIDATE_PER_MINUTE", "30", "Code checks (GET /api/coupons/validate) per user per minute."),
    key(
        "COUPON_UNKNOWN_CODE_LIMIT",
        "10",
        "Unknown coupon codes per hour from one user or address before it is blocked.",
    ),
    key(
        "COUPON_BLOCK_DURATION",
        "24",
        "Hours a code-guessing user or address stays blocked (ACCESS_BLOCKED).",
    ),
    key(
        "SCHEDULER_RESERVATION_TIMEOUT_CRON",
        "0 * * * * *",
        "Cron (with seconds, in COUPON_TIMEZONE) of the reservation-timeout job.",
    ),
    key("SCHEDULER_EXPIRY_CRON", "0 0 0 * * *", "Cron (with seconds, in COUPON_TIMEZONE) of the expiry job."),
    key(
        "SCHEDULER_STATISTICS_CRON",
        "0 0 * * * *",
        "Cron (with seconds, in COUPON_TIMEZONE) of the statistics job.",
    ),
    key("SCHEDULER_BATCH_SIZE", "500", "Rows per transaction of the reservation-timeout and expiry jobs."),
    key(
        "SCHEDULER_LOCK_LEASE",
        "600",
        "Seconds a job's cluster-wide lock outlives a scheduler that died while running the job.",
    ),
    key("LOG_FORMAT", "json", "`json` (one object per line) or `pretty` (local development)."),
    key("LOG_LEVEL", "info", "tracing filter, e.g. `info,coupon_store_pg=debug`; RUST_LOG overrides it."),
];

/// A setting that could not be read or parsed. The message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read configuration: {0}")]
    Source(#[from] config::ConfigError),
}

/// All settings, parsed and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub http: HttpSettings,
    pub coupon: CouponSettings,
    pub scheduler: SchedulerSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: SecretString,
    pub pool_size: usize,
    /// Connections of each HTTP worker's own pool (`DATABASE_WORKER_POOL_SIZE`).
    pub worker_pool_size: usize,
    pub timeout: Duration,
    /// `disable`, `require` or `verify-full`.
    pub ssl_mode: String,
    pub ssl_root_cert: Option<std::path::PathBuf>,
}

impl DatabaseSettings {
    /// libpq-style `key=value` connection string for this database. Secret: it holds the password.
    pub fn connection_string(&self) -> SecretString {
        self.connection_string_for(&self.name)
    }

    /// The same server and credentials, another database (tests and tooling create databases).
    pub fn connection_string_for(&self, database: &str) -> SecretString {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut s = format!(
            "host={} port={} user={} dbname={} connect_timeout={} application_name=coupon-service",
            quote(&self.host),
            self.port,
            quote(&self.user),
            quote(database),
            self.timeout.as_secs().max(1),
        );
        let password = self.password.expose_secret();
        if !password.is_empty() {
            s.push_str(" password=");
            s.push_str(&quote(password));
        }
        SecretString::from(s)
    }
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    /// `host:port` of Redis Cluster members; empty: the one server at `host:port`.
    pub cluster_nodes: Vec<String>,
    pub tls: bool,
    /// `None`: the system's roots.
    pub tls_ca: Option<std::path::PathBuf>,
    /// `None`: the default user.
    pub username: Option<String>,
    /// `None`: no AUTH.
    pub password: Option<SecretString>,
    pub pool_size: usize,
    pub timeout: Duration,
    pub key_prefix: String,
}

impl RedisSettings {
    /// `host:port` of the single server.
    pub fn node(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: Vec<String>,
    /// `PLAINTEXT`, `SSL` or `SASL_SSL`.
    pub security_protocol: String,
    /// `None`: the system's roots.
    pub ssl_ca: Option<std::path::PathBuf>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: SecretString,
    pub request_timeout: Duration,
    pub partitions: i32,
    pub replication_factor: i16,
    /// `retention.ms` of the event topics the service creates, and of the DLQs.
    pub topic_retention: Duration,
    pub dlq_retention: Duration,
    pub topics: TopicSettings,
}

/// Topic names (SPEC §6); all configurable.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub coupon_issued: String,
    pub coupon_reserved: String,
    pub coupon_used: String,
    pub coupon_cancelled: String,
    pub coupon_expired: String,
    pub coupon_budget: String,
    pub payment_completed: String,
    pub payment_failed: String,
    pub order_cancelled: String,
    pub coupon_issue_requested: String,
}

impl TopicSettings {
    /// Topics the service produces to.
    pub fn produced(&self) -> [&str; 6] {
        [
            &self.coupon_issued,
            &self.coupon_reserved,
            &self.coupon_used,
            &self.coupon_cancelled,
            &self.coupon_expired,
            &self.coupon_budget,
        ]
    }

    /// Topics the service consumes.
    pub fn consumed(&self) -> [&str; 4] {
        [&self.payment_completed, &self.payment_failed, &self.order_cancelled, &self.coupon_issue_requested]
    }

    /// Every topic the service needs, dead-letter topics of the consumed ones included.
    pub fn all_with_dlq(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.produced().iter().map(|t| t.to_string()).collect();
        for t in self.consumed() {
            topics.push(t.to_string());
            topics.push(format!("{t}.DLQ"));
        }
        topics
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct CouponSettings {
    pub reservation_timeout: Duration,
    pub max_coupons_per_order: u16,
    /// Percentages, each 1 to 100.
    pub budget_thresholds: Vec<u8>,
    pub idempotency_ttl: Duration,
    pub idempotency_lease: Duration,
    pub admin_tokens: Vec<SecretString>,
    pub timezone: chrono_tz::Tz,
    pub rate_limit_enabled: bool,
    pub rate_limit_per_minute: u32,
    pub rate_limit_per_hour: u32,
    pub validate_per_minute: u32,
    pub unknown_code_limit: u32,
    pub block_duration: Duration,
}

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub reservation_timeout_cron: CronSchedule,
    pub expiry_cron: CronSchedule,
    pub statistics_cron: CronSchedule,
    pub batch_size: u32,
    pub lock_lease: Duration,
    pub admin_port: u16,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub admin_port: u16,
    pub outbox_batch_size: u32,
    pub outbox_retention: Duration,
    pub dedupe_retention: Duration,
    pub lease_period: Duration,
}

/// A validated cron expression (six or seven fields, seconds first) and its source text.
#[derive(Clone)]
pub struct CronSchedule {
    pub expression: String,
    pub schedule: cron::Schedule,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Settings {
    /// Reads the process environment (and the file it names).
    pub fn load() -> Result<Self, SettingsError> {
        Self::from_env(std::env::vars())
    }

    /// Reads the given environment instead of the process's; tests use this so that they never
    /// mutate global state.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = vars.into_iter().collect();
        let mut builder = Config::builder();
        for k in KEYS {
            builder = builder.set_default(k.name.to_ascii_lowercase(), k.default)?;
        }
        if let Some(path) = env.get("COUPON_CONFIG_FILE").filter(|p| !p.trim().is_empty()) {
            builder = builder.add_source(File::new(path.trim(), FileFormat::Toml).required(true));
        }
        let config = builder.add_source(Environment::default().source(Some(env))).build()?;
        Reader(config).settings()
    }
}

/// Typed access to the layered configuration, with errors that name the variable.
struct Reader(Config);

impl Reader {
    fn settings(&self) -> Result<Settings, SettingsError> {
        Ok(Settings {
            database: DatabaseSettings {
                host: self.non_empty("DATABASE_HOST")?,
                port: self.parse("DATABASE_PORT")?,
                name: self.non_empty("DATABASE_NAME")?,
                user: self.non_empty("DATABASE_USER")?,
                password: self.secret("DATABASE_PASSWORD")?,
                pool_size: self.positive("DATABASE_POOL_SIZE")?,
                worker_pool_size: self.positive("DATABASE_WORKER_POOL_SIZE")?,
                timeout: self.duration("DATABASE_TIMEOUT", Unit::Seconds)?,
                ssl_mode: self.one_of("DATABASE_SSL_MODE", &["disable", "require", "verify-full"])?,
                ssl_root_cert: Some(self.string("DATABASE_SSL_ROOT_CERT")?)
                    .filter(|path| !path.is_empty())
                    .map(Into::into),
            },
            redis: RedisSettings {
                host: self.non_empty("REDIS_HOST")?,
                port: self.parse("REDIS_PORT")?,
                cluster_nodes: self.addresses("REDIS_CLUSTER_NODES")?,
                tls: self.bool("REDIS_TLS")?,
                tls_ca: Some(self.string("REDIS_TLS_CA")?).filter(|path| !path.is_empty()).map(Into::into),
                username: Some(self.string("REDIS_USERNAME")?).filter(|u| !u.is_empty()),
                password: Some(self.secret("REDIS_PASSWORD")?).filter(|p| !p.expose_secret().is_empty()),
                pool_size: self.positive("REDIS_POOL_SIZE")?,
                timeout: self.duration("REDIS_TIMEOUT", Unit::Seconds)?,
                key_prefix: self.string("REDIS_KEY_PREFIX")?,
            },
            kafka: KafkaSettings {
                bootstrap_servers: self.list("KAFKA_BOOTSTRAP_SERVERS")?,
                security_protocol: self
                    .one_of("KAFKA_SECURITY_PROTOCOL", &["PLAINTEXT", "SSL", "SASL_SSL"])?,
                ssl_ca: Some(self.string("KAFKA_SSL_CA")?).filter(|path| !path.is_empty()).map(Into::into),
                sasl_mechanism: self
                    .one_of("KAFKA_SASL_MECHANISM", &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])?,
                sasl_username: self.sasl_credential("KAFKA_SASL_USERNAME")?,
                sasl_password: self.secret("KAFKA_SASL_PASSWORD")?,
                request_timeout: self.duration("KAFKA_REQUEST_TIMEOUT", Unit::Seconds)?,
                partitions: self.positive("KAFKA_TOPIC_PARTITIONS")?,
                replication_factor: self.positive("KAFKA_REPLICATION_FACTOR")?,
                topic_retention: self.duration("KAFKA_TOPIC_RETENTION", Unit::Days)?,
                dlq_retention: self.duration("KAFKA_DLQ_RETENTION", Unit::Days)?,
                topics: TopicSettings {
                    coupon_issued: self.topic("KAFKA_TOPIC_COUPON_ISSUED")?,
                    coupon_reserved: self.topic("KAFKA_TOPIC_COUPON_RESERVED")?,
                    coupon_used: self.topic("KAFKA_TOPIC_COUPON_USED")?,
                    coupon_cancelled: self.topic("KAFKA_TOPIC_COUPON_CANCELLED")?,
                    coupon_expired: self.topic("KAFKA_TOPIC_COUPON_EXPIRED")?,
                    coupon_budget: self.topic("KAFKA_TOPIC_COUPON_BUDGET")?,
                    payment_completed: self.topic("KAFKA_TOPIC_PAYMENT_COMPLETED")?,
                    payment_failed: self.topic("KAFKA_TOPIC_PAYMENT_FAILED")?,
                    order_cancelled: self.topic("KAFKA_TOPIC_ORDER_CANCELLED")?,
                    coupon_issue_requested: self.topic("KAFKA_TOPIC_COUPON_ISSUE_REQUESTED")?,
                },
            },
            http: HttpSettings {
                host: self.non_empty("HTTP_HOST")?,
                port: self.parse("HTTP_PORT")?,
                workers: self.parse("HTTP_WORKERS")?,
                shutdown_timeout: self.duration("SHUTDOWN_TIMEOUT", Unit::Seconds)?,
                trusted_proxies: self.networks("HTTP_TRUSTED_PROXIES")?,
            },
            coupon: CouponSettings {
                reservation_timeout: self.duration("COUPON_RESERVATION_TIMEOUT", Unit::Minutes)?,
                max_coupons_per_order: self.bounded("COUPON_MAX_COUPONS_PER_ORDER", 1, 100)?,
                budget_thresholds: self.percentages("COUPON_BUDGET_THRESHOLDS")?,
                idempotency_ttl: self.duration("COUPON_IDEMPOTENCY_TTL", Unit::Hours)?,
                idempotency_lease: self.duration("COUPON_IDEMPOTENCY_LEASE", Unit::Seconds)?,
                admin_tokens: self.tokens("COUPON_ADMIN_TOKENS")?,
                timezone: self.parse("COUPON_TIMEZONE")?,
                rate_limit_enabled: self.bool("COUPON_RATE_LIMIT_ENABLED")?,
                rate_limit_per_minute: self.positive("COUPON_RATE_LIMIT_PER_MINUTE")?,
                rate_limit_per_hour: self.positive("COUPON_RATE_LIMIT_PER_HOUR")?,
                validate_per_minute: self.positive("COUPON_VALIDATE_PER_MINUTE")?,
                unknown_code_limit: self.positive("COUPON_UNKNOWN_CODE_LIMIT")?,
                block_duration: self.duration("COUPON_BLOCK_DURATION", Unit::Hours)?,
            },
            scheduler: SchedulerSettings {
                reservation_timeout_cron: self.cron("SCHEDULER_RESERVATION_TIMEOUT_CRON")?,
                expiry_cron: self.cron("SCHEDULER_EXPIRY_CRON")?,
                statistics_cron: self.cron("SCHEDULER_STATISTICS_CRON")?,
                batch_size: match self.parse("SCHEDULER_BATCH_SIZE")? {
                    0 => return Err(invalid("SCHEDULER_BATCH_SIZE", "must be at least 1")),
                    n => n,
                },
                lock_lease: self.duration("SCHEDULER_LOCK_LEASE", Unit::Seconds)?,
                admin_port: self.parse("SCHEDULER_ADMIN_PORT")?,
            },
            worker: WorkerSettings {
                admin_port: self.parse("WORKER_ADMIN_PORT")?,
                outbox_batch_size: self.positive("WORKER_OUTBOX_BATCH_SIZE")?,
                outbox_retention: self.duration("WORKER_OUTBOX_RETENTION", Unit::Hours)?,
                dedupe_retention: self.duration("WORKER_DEDUPE_RETENTION", Unit::Days)?,
                lease_period: match self.duration("WORKER_LEASE_PERIOD", Unit::Seconds)? {
                    d if d < Duration::from_secs(3) => {
                        return Err(invalid("WORKER_LEASE_PERIOD", "must be at least 3 seconds"));
                    }
                    d => d,
                },
            },
            log: LogSettings {
                format: match self.string("LOG_FORMAT")?.to_ascii_lowercase().as_str() {
                    "json" => LogFormat::Json,
                    "pretty" => LogFormat::Pretty,
                    other => {
                        return Err(invalid("LOG_FORMAT", format!("{other:?} is neither json nor pretty")));
                    }
                },
                level: self.non_empty("LOG_LEVEL")?,
            },
        })
    }

    fn string(&self, key: &'static str) -> Result<String, SettingsError> {
        self.0
            .get_string(&key.to_ascii_lowercase())
            .map(|v| v.trim().to_owned())
            .map_err(|e| invalid(key, e.to_string()))
    }

    fn one_of(&self, key: &'static str, allowed: &[&str]) -> Result<String, SettingsError> {
        let value = self.string(key)?;
        if !allowed.contains(&value.as_str()) {
            return Err(invalid(key, format!("{value:?} is not one of {}", allowed.join(", "))));
        }
        Ok(value)
    }

    fn non_empty(&self, key: &'static str) -> Result<String, SettingsError> {
        let value = self.string(key)?;
        if value.is_empty() {
            return Err(invalid(key, "must not be empty"));
        }
        Ok(value)
    }

    fn parse<T>(&self, key: &'static str) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.string(key)?;
        value.parse().map_err(|e| invalid(key, format!("{value:?}: {e}")))
    }

    fn positive<T>(&self, key: &'static str) -> Result<T, SettingsError>
    where
        T: FromStr + PartialOrd + Default,
        T::Err: fmt::Display,
    {
        let value: T = self.parse(key)?;
        if value <= T::default() {
            return Err(invalid(key, "must be at least 1"));
        }
        Ok(value)
    }

    fn bounded(&self, key: &'static str, min: u16, max: u16) -> Result<u16, SettingsError> {
        let value: u16 = self.parse(key)?;
        if !(min..=max).contains(&value) {
            return Err(invalid(key, format!("must be between {min} and {max}")));
        }
        Ok(value)
    }

    fn percentages(&self, key: &'static str) -> Result<Vec<u8>, SettingsError> {
        self.list(key)?
            .iter()
            .map(|item| {
                item.parse::<u8>()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| invalid(key, format!("{item:?} is not a percentage from 1 to 100")))
            })
            .collect()
    }

    fn bool(&self, key: &'static str) -> Result<bool, SettingsError> {
        let value = self.string(key)?;
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, format!("{value:?} is not a boolean (true/false)"))),
        }
    }

    fn duration(&self, key: &'static str, unit: Unit) -> Result<Duration, SettingsError> {
        let value = self.string(key)?;
        let parsed = match value.parse::<u64>() {
            Ok(n) => Ok(unit.times(n)),
            Err(_) => humantime::parse_duration(&value).map_err(|e| invalid(key, format!("{value:?}: {e}"))),
        }?;
        if parsed.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
        Ok(parsed)
    }

    fn secret(&self, key: &'static str) -> Result<SecretString, SettingsError> {
        // Not `string()`: its error would not echo the value, but keep secrets out of even that path.
        self.0
            .get_string(&key.to_ascii_lowercase())
            .map(SecretString::from)
            .map_err(|_| invalid(key, "cannot be read as text"))
    }

    fn list(&self, key: &'static str) -> Result<Vec<String>, SettingsError> {
        let items: Vec<String> = self
            .string(key)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if items.is_empty() {
            return Err(invalid(key, "must list at least one entry"));
        }
        Ok(items)
    }

    /// A SASL credential: required under `KAFKA_SECURITY_PROTOCOL=SASL_SSL`, with its password.
    fn sasl_credential(&self, key: &'static str) -> Result<String, SettingsError> {
        let username = self.string(key)?;
        if self.string("KAFKA_SECURITY_PROTOCOL")? == "SASL_SSL"
            && (username.is_empty() || self.secret("KAFKA_SASL_PASSWORD")?.expose_secret().is_empty())
        {
            return Err(invalid(key, "SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"));
        }
        Ok(username)
    }

    /// Comma-separated `host:port` addresses; empty for none.
    fn addresses(&self, key: &'static str) -> Result<Vec<String>, SettingsError> {
        self.string(key)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| match item.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                    Ok(item.to_owned())
                }
                _ => Err(invalid(key, format!("{item:?} is not host:port"))),
            })
            .collect()
    }

    /// Comma-separated addresses (one host each) or CIDR blocks; empty for none.
    fn networks(&self, key: &'static str) -> Result<Vec<ipnet::IpNet>, SettingsError> {
        self.string(key)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| invalid(key, format!("{item:?} is neither an IP address nor a CIDR block")))
            })
            .collect()
    }

    fn tokens(&self, key: &'static str) -> Result<Vec<SecretString>, SettingsError> {
        let raw = self.secret(key)?;
        let mut tokens = Vec::new();
        for (i, token) in raw.expose_secret().split(',').map(str::trim).enumerate() {
            if token.is_empty() {
                continue;
            }
            if token.chars().count() < 16 || token.chars().any(char::is_whitespace) {
                return Err(invalid(
                    key,
                    format!("token #{} must be at least 16 characters without spaces", i + 1),
                ));
            }
            tokens.push(SecretString::from(token.to_owned()));
        }
        Ok(tokens)
    }

    fn topic(&self, key: &'static str) -> Result<String, SettingsError> {
        let name = self.non_empty(key)?;
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.len() > 240 || !name.chars().all(legal) {
            return Err(invalid(key, format!("{name:?} is not a legal Kafka topic name")));
        }
        Ok(name)
    }

    fn cron(&self, key: &'static str) -> Result<CronSchedule, SettingsError> {
        let expression = self.non_empty(key)?;
        let schedule = cron::Schedule::from_str(&expression)
            .map_err(|e| invalid(key, format!("{expression:?}: {e} (six fields, seconds first)")))?;
        Ok(CronSchedule { expression, schedule })
    }
}

/// Unit of a plain-integer duration.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn times(self, n: u64) -> Duration {
        match self {
            Unit::Seconds => Duration::from_secs(n),
            Unit::Minutes => Duration::from_secs(n.saturating_mul(60)),
            Unit::Hours => Duration::from_secs(n.saturating_mul(3600)),
            Unit::Days => Duration::from_secs(n.saturating_mul(86_400)),
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        match load(pairs) {
            Ok(_) => panic!("settings {pairs:?} were accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let s = load(&[]).expect("defaults load");
        assert_eq!(s.http.port, 8080);
        assert_eq!(s.coupon.reservation_timeout, Duration::from_secs(600));
        assert_eq!(s.kafka.topics.payment_completed, "payment.completed.v1");
        assert_eq!(s.kafka.topics.all_with_dlq().len(), 14);
        assert_eq!(
            (s.coupon.max_coupons_per_order, s.coupon.budget_thresholds.as_slice()),
            (5, &[80, 100][..])
        );
        assert!(s.coupon.rate_limit_enabled);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn environment_overrides_defaults_and_durations_take_units() {
        let s = load(&[
            ("HTTP_PORT", "9999"),
            ("COUPON_RESERVATION_TIMEOUT", "2s"),
            ("KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2"),
            ("COUPON_TIMEZONE", "Asia/Seoul"),
            ("COUPON_RATE_LIMIT_ENABLED", "false"),
        ])
        .expect("valid overrides");
        assert_eq!(s.http.port, 9999);
        assert_eq!(s.coupon.reservation_timeout, Duration::from_secs(2));
        assert_eq!(s.kafka.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(s.coupon.timezone, chrono_tz::Asia::Seoul);
        assert!(!s.coupon.rate_limit_enabled);
    }

    #[test]
    fn errors_name_the_key() {
        for (key, value) in [
            ("DATABASE_PORT", "abc"),
            ("DATABASE_POOL_SIZE", "0"),
            ("DATABASE_WORKER_POOL_SIZE", "0"),
            ("HTTP_PORT", "70000"),
            ("COUPON_RESERVATION_TIMEOUT", "soon"),
            ("COUPON_TIMEZONE", "Mars/Olympus"),
            ("COUPON_RATE_LIMIT_ENABLED", "maybe"),
            ("SCHEDULER_EXPIRY_CRON", "* * *"),
            ("KAFKA_TOPIC_COUPON_USED", "bad topic"),
            ("LOG_FORMAT", "xml"),
            ("COUPON_ADMIN_TOKENS", "short"),
            ("HTTP_TRUSTED_PROXIES", "10.0.0.0/8, gateway"),
            ("COUPON_VALIDATE_PER_MINUTE", "0"),
        ] {
            let message = error_of(&[(key, value)]);
            assert!(message.contains(key), "{message:?} does not name {key}");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        assert!(load(&[]).expect("valid").http.trusted_proxies.is_empty());
        let s = load(&[("HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1")]).expect("valid");
        let listed: Vec<String> = s.http.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
    }

    #[test]
    fn secrets_stay_out_of_errors_and_debug() {
        let message = error_of(&[("COUPON_ADMIN_TOKENS", "tiny-secret")]);
        assert!(!message.contains("tiny-secret"), "{message}");

        let s = load(&[
            ("DATABASE_PASSWORD", "hunter2-hunter2"),
            ("REDIS_PASSWORD", "redis-pass-hunter3"),
            ("COUPON_ADMIN_TOKENS", "0123456789abcdef-admin"),
        ])
        .expect("valid");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("hunter3"), "{debug}");
        assert!(!debug.contains("0123456789abcdef-admin"), "{debug}");
    }

    #[test]
    fn redis_credentials_are_optional() {
        let none = load(&[]).expect("valid").redis;
        assert_eq!((none.username, none.password.is_none()), (None, true));
        let some = load(&[("REDIS_USERNAME", "coupon"), ("REDIS_PASSWORD", "pw")]).expect("valid").redis;
        assert_eq!(some.username.as_deref(), Some("coupon"));
        assert_eq!(some.password.map(|p| p.expose_secret().to_owned()).as_deref(), Some("pw"));
    }

    #[test]
    fn redis_cluster_nodes_are_host_port_pairs_and_tls_is_off_by_default() {
        let single = load(&[]).expect("valid").redis;
        assert_eq!((single.cluster_nodes.len(), single.tls, single.tls_ca), (0, false, None));
        let cluster = load(&[("REDIS_CLUSTER_NODES", "10.0.0.1:7001, redis-2:7002"), ("REDIS_TLS", "true")])
            .expect("valid")
            .redis;
        assert_eq!(cluster.cluster_nodes, ["10.0.0.1:7001", "redis-2:7002"]);
        assert!(cluster.tls);
        for bad in ["redis-1", "redis-1:", ":7001", "redis-1:70000"] {
            let error = load(&[("REDIS_CLUSTER_NODES", bad)]).expect_err(bad).to_string();
            assert!(error.contains("REDIS_CLUSTER_NODES"), "{bad}: {error}");
        }
    }

    #[test]
    fn kafka_sasl_needs_credentials_and_a_known_mechanism() {
        let plain = load(&[]).expect("valid").kafka;
        assert_eq!((plain.security_protocol.as_str(), plain.ssl_ca), ("PLAINTEXT", None));
        let error = load(&[("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]).expect_err("no credentials").to_string();
        assert!(error.contains("KAFKA_SASL_USERNAME"), "{error}");
        let error =
            load(&[("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")]).expect_err("not in SPEC").to_string();
        assert!(error.contains("KAFKA_SECURITY_PROTOCOL"), "{error}");
        let error = load(&[("KAFKA_SASL_MECHANISM", "GSSAPI")]).expect_err("unsupported").to_string();
        assert!(error.contains("KAFKA_SASL_MECHANISM"), "{error}");
        let sasl = load(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_USERNAME", "coupon"),
            ("KAFKA_SASL_PASSWORD", "kafka-pass-hunter4"),
        ])
        .expect("valid");
        assert_eq!(sasl.kafka.sasl_username, "coupon");
        assert!(!format!("{sasl:?}").contains("hunter4"), "the SASL password stays out of Debug");
    }

    #[test]
    fn connection_string_quotes_values() {
        let s = load(&[("DATABASE_PASSWORD", "it's")]).expect("valid");
        let conn = s.database.connection_string();
        assert!(conn.expose_secret().contains(r"password='it\'s'"), "quoted");
    }
}
