//! Composition root of `event-worker`: the Kafka side of the service (outbox relay and consumers,
//! SPEC §6). Pods may run in any number; they share the partitions of the consumed topics.
//!
//! Start-up never waits for Kafka: the broker connection (and creation of the SPEC §6 topics, DLQs
//! included) happens in the background with back-off, and `/health/ready` reports `kafka` down
//! until it succeeds. Metrics and health are served on `WORKER_ADMIN_PORT`.

use std::sync::Arc;

use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

use coupon_domain::clock::SystemClock;
use coupon_events_kafka::admin::TopicSpec;
use coupon_events_kafka::broker::LazyBroker;
use coupon_events_kafka::consumer::{ConsumerSettings, Consumers, Subscription};
use coupon_events_kafka::inbound::Inbound;
use coupon_events_kafka::relay::{Relay, RelaySettings};
use coupon_http::ops::Dependency;
use coupon_http::server::AdminServer;
use coupon_runtime::settings::Settings;
use coupon_runtime::shutdown;
use coupon_store_pg::inbox::PgInbox;
use coupon_store_pg::leases::PgLeases;
use coupon_store_pg::outbox::PgOutbox;
use coupon_store_pg::pool::PgPool;
use tokio_util::sync::CancellationToken;

pub mod dlq;

/// Command line. Configuration comes from the environment (README, "Configuration").
#[derive(Debug, Parser)]
#[command(
    name = "event-worker",
    version,
    about = "Coupon service Kafka worker: outbox relay, consumers, DLQ tools"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay the outbox and consume the payment, order and issue-request topics (the default).
    Serve,
    /// Read and replay the dead letters of the consumed topics.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print the dead letters as JSON lines.
    List {
        /// Only the letters of this consumed topic (e.g. payment.completed.v1).
        #[arg(long)]
        topic: Option<String>,
        /// Only the letters with this reason code (e.g. RESERVATION_NOT_FOUND).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Produce dead-lettered records again on their original topic, after forgetting their
    /// dedupe rows: one record by its place, or every letter with a reason.
    Replay {
        /// The record's original topic.
        #[arg(required_unless_present = "reason")]
        topic: Option<String>,
        /// The record's original partition.
        #[arg(required_unless_present = "reason")]
        partition: Option<i32>,
        /// The record's original offset.
        #[arg(required_unless_present = "reason")]
        offset: Option<i64>,
        /// Every letter with this reason code instead (of the topic given with --topic, or all).
        #[arg(long, conflicts_with_all = ["partition", "offset"])]
        reason: Option<String>,
        /// With --reason: only the letters of this consumed topic.
        #[arg(long = "topic", requires = "reason")]
        of_topic: Option<String>,
    },
}

impl Cli {
    /// Runs the chosen command to completion.
    ///
    /// # Errors
    /// Invalid settings, a failed start, or a DLQ command that failed.
    pub async fn run(self) -> anyhow::Result<()> {
        let settings = Settings::load().context("configuration")?;
        coupon_runtime::telemetry::init(&settings.log);
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => App::build(settings)?.run_until_stopped().await,
            Command::Dlq { command: DlqCommand::List { topic, reason } } => {
                // The command's output is its answer: stdout, while the logs go to stderr.
                let mut out = std::io::stdout().lock();
                for letter in dlq::list(&settings, &dlq::Filter { topic, reason }).await? {
                    writeln!(out, "{}", serde_json::to_string(&letter)?)?;
                }
                Ok(())
            }
            Command::Dlq { command: DlqCommand::Replay { topic, partition, offset, reason, of_topic } } => {
                let selection = match (reason, topic, partition, offset) {
                    (Some(reason), ..) => {
                        dlq::Selection::Matching(dlq::Filter { topic: of_topic, reason: Some(reason) })
                    }
                    (None, Some(topic), Some(partition), Some(offset)) => {
                        dlq::Selection::Record { topic, partition, offset }
                    }
                    _ => anyhow::bail!("give TOPIC PARTITION OFFSET, or --reason"),
                };
                let mut out = std::io::stdout().lock();
                for replayed in dlq::replay(&settings, &selection).await? {
                    let l = &replayed.letter;
                    writeln!(
                        out,
                        "replayed {} partition {} offset {} ({}) as offset {}",
                        l.original_topic, l.partition, l.offset, l.reason, replayed.offset
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// How long the relay waits after finding the outbox empty.
const RELAY_IDLE_POLL: Duration = Duration::from_millis(50);

/// A built event-worker, its admin port bound.
pub struct App {
    settings: Settings,
    pg: PgPool,
    broker: LazyBroker,
    admin: AdminServer,
    cancel: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("admin_port", &self.admin.port()).finish_non_exhaustive()
    }
}

impl App {
    /// Builds the adapters and binds the admin port.
    ///
    /// # Errors
    /// Invalid pool settings, or the admin port cannot be bound.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let pg = coupon_wiring::pg_pool(&settings)?;
        let broker = LazyBroker::default();
        let ops = coupon_wiring::operations(
            &pg,
            Vec::new(),
            vec![Dependency::required(pg.probe()), Dependency::required(broker.probe())],
            settings.database.timeout.max(settings.kafka.request_timeout),
        )?;
        let admin = coupon_wiring::admin_server(&settings, settings.worker.admin_port, ops, "event-worker")?;
        Ok(Self { settings, pg, broker, admin, cancel: CancellationToken::new() })
    }

    /// Port of `/metrics` and `/health/*`.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Cancelling it stops the worker as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until SIGTERM/SIGINT (or the shutdown token): connects to Kafka in the background,
    /// then relays the outbox and consumes its share of the payment and order partitions. On shutdown it lets the current round finish, gives its lease up
    /// and stops the admin server.
    ///
    /// # Errors
    /// When the admin server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { settings, pg, broker, admin, cancel } = self;
        let kafka = &settings.kafka;
        let config = coupon_wiring::broker_config(&settings, "coupon-event-worker")?;
        let topics: Vec<TopicSpec> = kafka
            .topics
            .all_with_dlq()
            .into_iter()
            .map(|name| TopicSpec {
                retention: if name.ends_with(".DLQ") { kafka.dlq_retention } else { kafka.topic_retention },
                name,
                partitions: kafka.partitions,
                replication_factor: kafka.replication_factor,
            })
            .collect();
        let holder = coupon_runtime::instance_id();
        let work = async {
            let Some(connected) = broker.connect(&config, &topics, &cancel).await else {
                return;
            };
            let relay = Relay::new(
                Arc::new(PgOutbox::new(pg.clone())),
                Arc::new(PgLeases::new(pg.clone())),
                connected.clone(),
                holder.clone(),
                RelaySettings {
                    batch: settings.worker.outbox_batch_size,
                    idle_poll: RELAY_IDLE_POLL,
                    retention: settings.worker.outbox_retention,
                    lease: settings.worker.lease_period,
                },
                Arc::new(SystemClock),
            );
            let topics = &settings.kafka.topics;
            let consumers = Consumers::new(
                Arc::new(PgInbox::new(
                    pg.clone(),
                    coupon_wiring::encoder(&settings),
                    settings.coupon.timezone,
                )),
                Arc::new(PgLeases::new(pg.clone())),
                connected,
                holder.clone(),
                vec![
                    Subscription { topic: topics.payment_completed.clone(), kind: Inbound::PaymentCompleted },
                    Subscription { topic: topics.payment_failed.clone(), kind: Inbound::PaymentFailed },
                    Subscription { topic: topics.order_cancelled.clone(), kind: Inbound::OrderCancelled },
                    Subscription {
                        topic: topics.coupon_issue_requested.clone(),
                        kind: Inbound::IssueRequested,
                    },
                ],
                ConsumerSettings {
                    lease: settings.worker.lease_period,
                    dedupe_retention: settings.worker.dedupe_retention,
                },
                Arc::new(SystemClock),
            );
            tracing::info!(holder = %holder, "outbox relay and consumers started");
            tokio::join!(relay.run(cancel.clone()), consumers.run(cancel.clone()));
        };
        tokio::join!(work, shutdown::wait(&cancel));
        admin.stop().await?;
        tracing::info!("event-worker stopped");
        Ok(())
    }
}
