//! Composition root of `api-server`: builds the adapters from settings, hands them to the HTTP
//! layer, and serves until SIGTERM/SIGINT. Stateless: run as many replicas as the load needs.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coupon_api::auth::AdminTokens;
use coupon_api::idempotency::Keys;
use coupon_api::limits::TrustedProxies;
use coupon_api::state::AppState;
use coupon_domain::administration::PolicyAdmin;
use coupon_domain::budget::Thresholds;
use coupon_domain::clock::SystemClock;
use coupon_domain::codes::UniqueCodes;
use coupon_domain::issue::Issuing;
use coupon_domain::limits::{Guard, RateLimiter};
use coupon_domain::policy_cache::CachedPolicies;
use coupon_domain::quote::Quoting;
use coupon_domain::reconciliation::AUDIT_EVERY;
use coupon_domain::reservation::{Checkout, CheckoutRules};
use coupon_domain::support::Support;
use coupon_domain::wallet::WalletStore;
use coupon_http::ops::Dependency;
use coupon_http::server::{ServerOptions, serve};
use coupon_lock_redis::gate::RedisStockGate;
use coupon_lock_redis::limits::{LimitConfig, RedisRateLimiter};
use coupon_lock_redis::pool::{RedisConfig, RedisPool, RedisTarget, RedisTls};
use coupon_runtime::settings::Settings;
use coupon_runtime::telemetry;
use coupon_store_pg::codes::PgCodeStore;
use coupon_store_pg::idempotency::PgIdempotency;
use coupon_store_pg::issue::PgCouponStore;
use coupon_store_pg::migrate;
use coupon_store_pg::policy::PgPolicyStore;
use coupon_store_pg::pool::PgPool;
use coupon_store_pg::reservation::PgReservationStore;
use coupon_store_pg::support::PgSupportStore;
use coupon_store_pg::wallet::PgWalletStore;
use secrecy::ExposeSecret;

/// Command line. Configuration comes from the environment (README, "Configuration").
#[derive(Debug, Parser)]
#[command(name = "api-server", version, about = "Coupon service HTTP API, and the schema migration step")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit (a release step; run before the services).
    Migrate {
        /// Revert every migration instead (development only: drops all data).
        #[arg(long)]
        revert_all: bool,
    },
}

impl Cli {
    /// Runs the chosen command to completion.
    ///
    /// # Errors
    /// Invalid settings, an unreachable dependency at start-up, or a failed migration.
    pub async fn run(self) -> anyhow::Result<()> {
        let settings = Settings::load().context("configuration")?;
        telemetry::init(&settings.log);
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => Application::build(settings)?.run_until_stopped().await,
            Command::Migrate { revert_all } => {
                let conn = settings.database.connection_string();
                let tls = coupon_wiring::pg_tls(&settings)?;
                let (what, versions) = if revert_all {
                    ("reverted", migrate::revert_all(&conn, &tls).await?)
                } else {
                    ("applied", migrate::run_pending(&conn, &tls).await?)
                };
                tracing::info!(count = versions.len(), versions = ?versions, "migrations {what}");
                Ok(())
            }
        }
    }
}

/// How old a policy the issuing path may act on; the issuing transaction re-checks it anyway.
const POLICY_SNAPSHOT_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

fn app_state(settings: &Settings, pg: &PgPool, redis: &RedisPool) -> anyhow::Result<AppState> {
    let coupon = &settings.coupon;
    let limiter: Option<Arc<dyn RateLimiter>> = if coupon.rate_limit_enabled {
        let limiter = RedisRateLimiter::new(
            redis.clone(),
            LimitConfig {
                per_minute: coupon.rate_limit_per_minute,
                per_hour: coupon.rate_limit_per_hour,
                validate_per_minute: coupon.validate_per_minute,
                unknown_codes_per_hour: coupon.unknown_code_limit,
                block_for: coupon.block_duration,
            },
        );
        Some(Arc::new(limiter))
    } else {
        None
    };
    let guard = Guard::new(limiter);
    let encoder = coupon_wiring::encoder(settings);
    let policies = Arc::new(PgPolicyStore::new(pg.clone()));
    let coupons = Arc::new(PgCouponStore::new(pg.clone(), encoder.clone()).context("issue batchers")?);
    let gate = Arc::new(RedisStockGate::new(redis.clone()));
    let clock = Arc::new(SystemClock);
    let rules = CheckoutRules {
        max_per_order: settings.coupon.max_coupons_per_order,
        budget_thresholds: Thresholds::new(&settings.coupon.budget_thresholds)?,
    };
    let checkout = Checkout::new(
        Arc::new(PgReservationStore::new(pg.clone(), encoder.clone()).context("checkout lanes")?),
        clock.clone(),
        settings.coupon.reservation_timeout,
        rules.clone(),
    );
    let codes = UniqueCodes::new(
        Arc::new(PgCodeStore::new(pg.clone())),
        policies.clone(),
        Arc::new(coupon_wiring::OsEntropy),
        clock.clone(),
    );
    let wallet_store = Arc::new(PgWalletStore::new(pg.clone()));
    let quotes = Quoting::new(wallet_store.clone(), clock.clone(), rules);
    let wallet: Arc<dyn WalletStore> = wallet_store;
    let support_store = Arc::new(PgSupportStore::new(pg.clone(), encoder));
    Ok(AppState {
        issuing: Issuing::new(
            Arc::new(CachedPolicies::new(policies.clone(), clock.clone(), POLICY_SNAPSHOT_TTL)),
            coupons,
            gate.clone(),
            guard.clone(),
            clock.clone(),
            settings.coupon.timezone,
        ),
        policies: PolicyAdmin::new(policies, gate, clock.clone()),
        support: Support::new(support_store, wallet.clone(), &checkout, clock.clone()),
        checkout,
        quotes,
        codes,
        wallet,
        jobs: coupon_wiring::jobs(settings, pg, clock.clone()),
        dead_letters: Arc::new(coupon_wiring::dead_letters::KafkaDeadLetters::new(settings, pg.clone())?),
        clock,
        zone: settings.coupon.timezone,
        guard,
        proxies: TrustedProxies::new(settings.http.trusted_proxies.clone()),
        keys: Keys {
            store: Arc::new(PgIdempotency::new(pg.clone())),
            ttl: settings.coupon.idempotency_ttl,
            lease: settings.coupon.idempotency_lease,
        },
    })
}

/// A built, listening api-server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    /// Audits the first-come gates against PostgreSQL while the server runs.
    issuing: Issuing,
    /// Resumes unique-code jobs whose runner died.
    codes: UniqueCodes,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the adapters and binds the listener (port 0 picks a free port). Pools connect
    /// lazily, so the server starts even while a dependency is down and reports it on
    /// `/health/ready` until it is back.
    ///
    /// # Errors
    /// Invalid pool settings, or the port cannot be bound.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        // The wallet's reads take connections of each HTTP worker's own pool (`get_local`).
        let pg = coupon_wiring::pg_pool(&settings)?.with_local_size(settings.database.worker_pool_size);
        let redis = RedisPool::new(&RedisConfig {
            target: if settings.redis.cluster_nodes.is_empty() {
                RedisTarget::Node(settings.redis.node())
            } else {
                RedisTarget::Cluster(settings.redis.cluster_nodes.clone())
            },
            tls: settings.redis.tls.then(|| RedisTls { ca_file: settings.redis.tls_ca.clone() }),
            username: settings.redis.username.clone(),
            password: settings.redis.password.clone(),
            max_size: settings.redis.pool_size,
            timeout: settings.redis.timeout,
            key_prefix: settings.redis.key_prefix.clone(),
        })?;
        let sample_redis = redis.clone();
        let ops = coupon_wiring::operations(
            &pg,
            vec![Arc::new(move || sample_redis.record_metrics())],
            vec![Dependency::required(pg.probe()), Dependency::optional(redis.probe())],
            settings.database.timeout.max(settings.redis.timeout),
        )?;
        let state = app_state(&settings, &pg, &redis)?;
        let (issuing, codes) = (state.issuing.clone(), state.codes.clone());
        let tokens = AdminTokens::new(
            settings.coupon.admin_tokens.iter().map(|t| t.expose_secret().to_owned()).collect(),
        );
        let listener =
            TcpListener::bind((settings.http.host.as_str(), settings.http.port)).with_context(|| {
                format!("binding {}:{} (HTTP_HOST, HTTP_PORT)", settings.http.host, settings.http.port)
            })?;
        let port = listener.local_addr()?.port();
        let options = ServerOptions {
            workers: settings.http.workers,
            shutdown_timeout: settings.http.shutdown_timeout,
            handle_signals: true,
        };
        let routes = |cfg: &mut actix_web::web::ServiceConfig, (state, tokens)| {
            coupon_api::routes(cfg, state, tokens);
            coupon_api::docs::asyncapi(cfg, coupon_events_kafka::asyncapi::DOCUMENT);
        };
        let server = serve(listener, ops, (state, tokens), routes, &options)?;
        tracing::info!(port, "api-server listening");
        Ok(Self { port, server, issuing, codes })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully (tests; signals are handled by actix itself).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let audit = tokio::spawn(audit_gates(self.issuing));
        let resume = tokio::spawn(resume_code_jobs(self.codes));
        let served = self.server.await;
        audit.abort();
        resume.abort();
        served?;
        tracing::info!("api-server stopped");
        Ok(())
    }
}

/// Takes over unique-code jobs whose runner died (their lease lapsed), every `codes::LEASE`.
async fn resume_code_jobs(codes: UniqueCodes) {
    // Exported from the start, so that dashboards show zero rather than no data.
    metrics::counter!("coupon_unique_codes_generated_total").increment(0);
    metrics::counter!("coupon_code_jobs_total").increment(0);
    metrics::counter!("coupon_budget_thresholds_total").increment(0);
    let mut ticks = tokio::time::interval(coupon_domain::codes::LEASE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = codes.resume_stalled().await {
            tracing::warn!(error = %e, "cannot look for stalled code jobs");
        }
    }
}

/// Reconciles the first-come gates with PostgreSQL every `AUDIT_EVERY` (SPEC §10), publishing each
/// watched gate's drift as `coupon_gate_drift{policy}` and counting rebuilds.
async fn audit_gates(issuing: Issuing) {
    metrics::counter!("coupon_gate_reconciliations_total").increment(0);
    let mut ticks = tokio::time::interval(AUDIT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for drift in issuing.audit_gates().await {
            metrics::gauge!("coupon_gate_drift", "policy" => drift.policy.to_string())
                .set(drift.units as f64);
            if drift.reconciled {
                metrics::counter!("coupon_gate_reconciliations_total").increment(1);
            }
        }
    }
}
