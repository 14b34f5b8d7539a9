//! The connection to the Kafka cluster.
//!
//! rskafka retries failed requests forever and has no request timeout of its own. Left like that,
//! a dead broker hangs start-up, readiness checks and the relay. So every client built here has a
//! retry deadline, and every request made through [`Broker`] also runs under a timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};
use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

use crate::admin::{self, TopicSpec};
pub use crate::error::BrokerError;
use crate::security::{KafkaSecurity, Secured};

/// Connection settings (built from `KAFKA_*`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub bootstrap_servers: Vec<String>,
    /// Bound on any single operation including its retries.
    pub request_timeout: Duration,
    pub client_id: String,
    pub security: KafkaSecurity,
}

/// A connected Kafka client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    client: Arc<Client>,
    timeout: Duration,
    /// For the admin requests rskafka does not send (see [`crate::admin`]).
    bootstrap: Arc<[String]>,
    secured: Secured,
}

impl Broker {
    /// Connects to the bootstrap brokers and reads the cluster metadata.
    ///
    /// # Errors
    /// When the TLS roots cannot be read, or no broker answers (or accepts the credentials) within
    /// the request timeout.
    pub async fn connect(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let secured = config.security.prepare().map_err(BrokerError::Security)?;
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(config.request_timeout),
        };
        let builder = ClientBuilder::new(config.bootstrap_servers.clone())
            .client_id(config.client_id.as_str())
            .backoff_config(backoff);
        let builder = secured.apply(builder);
        let client = match within(config.request_timeout, builder.build()).await {
            Ok(client) => client,
            // rskafka retries a refused login or certificate like a network error until the
            // timeout hides the cause: one attempt of our own names it (in plain text there is
            // nothing to refuse but the connection).
            Err(e) if secured.is_plain() => return Err(e),
            Err(e) => {
                let refused =
                    admin::refusal(&config.bootstrap_servers, &secured, config.request_timeout).await;
                return Err(refused.map_or(e, BrokerError::Refused));
            }
        };
        Ok(Self {
            client: Arc::new(client),
            timeout: config.request_timeout,
            bootstrap: config.bootstrap_servers.clone().into(),
            secured,
        })
    }

    /// The underlying client, for producers and consumers.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Creates each topic that does not exist yet, with its retention; existing topics are left
    /// as they are (one created by another process meanwhile too).
    ///
    /// # Errors
    /// When the broker cannot be reached or refuses to create a topic.
    pub async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<Vec<String>, BrokerError> {
        let existing = within(self.timeout, self.client.list_topics()).await?;
        let missing: Vec<TopicSpec> =
            topics.iter().filter(|t| !existing.iter().any(|e| e.name == t.name)).cloned().collect();
        let created = admin::create_topics(&self.bootstrap, &self.secured, &missing, self.timeout).await?;
        if !created.is_empty() {
            tracing::info!(topics = ?created, "created Kafka topics");
        }
        Ok(created)
    }

    /// Partition count of a topic, if it exists.
    ///
    /// # Errors
    /// When the broker cannot be reached.
    pub async fn partitions(&self, topic: &str) -> Result<Option<usize>, BrokerError> {
        let topics = within(self.timeout, self.client.list_topics()).await?;
        Ok(topics.into_iter().find(|t| t.name == topic).map(|t| t.partitions.len()))
    }

    /// The `retention.ms` of `topic`, as the broker reports it (`None` when it reports none).
    ///
    /// # Errors
    /// When the broker cannot be reached or refuses the request.
    pub async fn retention_of(&self, topic: &str) -> Result<Option<Duration>, BrokerError> {
        admin::retention_of(&self.bootstrap, &self.secured, topic, self.timeout).await
    }

    /// A readiness probe that fetches cluster metadata.
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(KafkaProbe { broker: self.clone() })
    }
}

/// Runs a client call under the timeout.
pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, rskafka::client::error::Error>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BrokerError::Timeout(timeout)),
    }
}

struct KafkaProbe {
    broker: Broker,
}

impl Probe for KafkaProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            within(self.broker.timeout, self.broker.client.list_topics())
                .await
                .map(|_| ())
                .map_err(|e| probe_error(&e))
        })
    }
}

/// `e` as readiness reports it.
fn probe_error(e: &BrokerError) -> ProbeError {
    match (e, e.refusal()) {
        (BrokerError::Timeout(_), _) => ProbeError::timeout(e),
        (_, Some(reason)) => ProbeError { reason, detail: e.to_string() },
        (_, None) => ProbeError::unreachable(e),
    }
}

/// A broker connection made in the background. The event-worker must start (and report itself
/// not ready) while Kafka is down, then connect by itself when the broker comes back.
#[derive(Debug, Clone, Default)]
pub struct LazyBroker {
    slot: Arc<std::sync::OnceLock<Broker>>,
    /// Why the last attempt to connect failed, for readiness until one succeeds.
    last_failure: Arc<std::sync::Mutex<Option<ProbeError>>>,
}

impl LazyBroker {
    /// The broker, once connected.
    pub fn get(&self) -> Option<&Broker> {
        self.slot.get()
    }

    /// Connects, retrying with back-off until it succeeds or `cancel` fires, then creates the
    /// missing `topics`. Returns the broker, or `None` when cancelled first.
    pub async fn connect(
        &self,
        config: &BrokerConfig,
        topics: &[TopicSpec],
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<Broker> {
        let mut delay = Duration::from_millis(200);
        loop {
            let attempt = async {
                let broker = Broker::connect(config).await?;
                broker.ensure_topics(topics).await?;
                Ok::<_, BrokerError>(broker)
            };
            let outcome = tokio::select! {
                () = cancel.cancelled() => return None,
                outcome = attempt => outcome,
            };
            match outcome {
                Ok(broker) => {
                    tracing::info!(brokers = ?config.bootstrap_servers, "connected to Kafka");
                    return Some(self.slot.get_or_init(|| broker).clone());
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Kafka not reachable");
                    *self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(probe_error(&e));
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Readiness: down until connected (with the last attempt's reason), then a metadata round trip.
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(LazyProbe { broker: self.clone() })
    }
}

struct LazyProbe {
    broker: LazyBroker,
}

impl Probe for LazyProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            match self.broker.get() {
                Some(broker) => broker.probe().check().await,
                None => Err(self
                    .broker
                    .last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
                    .unwrap_or_else(|| ProbeError::not_connected("the broker was not reached yet"))),
            }
        })
    }
}
