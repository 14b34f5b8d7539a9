//! The dead letters of the consumed topics, read from their `{topic}.DLQ` topics on Kafka and
//! replayed there, for the event-worker's `dlq` command and the api-server's admin API alike.
//! Each call connects to the brokers for its own time: operators use it now and then.

use coupon_domain::clock::{Clock, SystemClock};
use coupon_domain::dead_letters::{DeadLetter, DeadLetters, LetterFilter, Replay};
use coupon_domain::port::{PortFuture, StoreError};
use coupon_events_kafka::broker::{Broker, BrokerConfig, BrokerError};
use coupon_events_kafka::dlq::{self, DeadLettered};
use coupon_runtime::settings::Settings;
use coupon_store_pg::inbox::PgInbox;
use coupon_store_pg::pool::PgPool;

/// The DLQs of the consumed topics on the brokers of `KAFKA_*`.
#[derive(Debug, Clone)]
pub struct KafkaDeadLetters {
    config: BrokerConfig,
    consumed: Vec<String>,
    inbox: PgInbox,
}

fn unavailable(e: BrokerError) -> StoreError {
    StoreError::Unavailable(format!("Kafka: {e}"))
}

impl KafkaDeadLetters {
    /// # Errors
    /// Invalid Kafka settings.
    pub fn new(settings: &Settings, pg: PgPool) -> anyhow::Result<Self> {
        Ok(Self {
            config: crate::broker_config(settings, "coupon-dlq")?,
            consumed: settings.kafka.topics.consumed().iter().map(|t| (*t).to_owned()).collect(),
            inbox: PgInbox::new(pg, crate::encoder(settings), settings.coupon.timezone),
        })
    }

    /// Connects to the brokers.
    ///
    /// # Errors
    /// No broker answers.
    pub async fn broker(&self) -> Result<Broker, StoreError> {
        Broker::connect(&self.config).await.map_err(unavailable)
    }

    /// The letters of the consumed topics that `filter` admits, as the DLQ keeps them.
    ///
    /// # Errors
    /// Kafka failed.
    pub async fn letters(
        &self,
        broker: &Broker,
        filter: &LetterFilter,
    ) -> Result<Vec<DeadLettered>, StoreError> {
        let mut letters = Vec::new();
        for topic in &self.consumed {
            if filter.topic.as_deref().is_some_and(|wanted| wanted != topic) {
                continue;
            }
            let read = dlq::read(broker, &format!("{topic}.DLQ")).await.map_err(unavailable)?;
            letters.extend(read.into_iter().filter(|l| filter.code.as_deref().is_none_or(|c| l.code() == c)));
        }
        Ok(letters)
    }

    /// The latest letter of the record at (`topic`, `partition`, `offset`), if any.
    ///
    /// # Errors
    /// Kafka failed.
    pub async fn latest(
        &self,
        broker: &Broker,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<DeadLettered>, StoreError> {
        let filter = LetterFilter { topic: Some(topic.to_owned()), code: None };
        Ok(self
            .letters(broker, &filter)
            .await?
            .into_iter()
            .rev()
            .find(|l| l.original_topic == topic && l.partition == partition && l.offset == offset))
    }

    /// Forgets the record's dedupe row and produces it again; its new offset. The caller refuses
    /// a letter whose value was truncated.
    ///
    /// # Errors
    /// Kafka or PostgreSQL failed.
    pub async fn replay_letter(&self, broker: &Broker, letter: &DeadLettered) -> Result<i64, StoreError> {
        if let Some(event_id) = letter.event_id() {
            self.inbox.forget(&letter.original_topic, &event_id).await?;
        }
        let offset = dlq::replay(broker, letter, SystemClock.now()).await.map_err(unavailable)?;
        tracing::info!(topic = %letter.original_topic, partition = letter.partition, offset = letter.offset,
            new_offset = offset, reason = %letter.reason, "DLQ record replayed");
        Ok(offset)
    }
}

impl DeadLetters for KafkaDeadLetters {
    fn list<'a>(&'a self, filter: &'a LetterFilter) -> PortFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let broker = self.broker().await?;
            let letters = self.letters(&broker, filter).await?;
            Ok(letters
                .iter()
                .map(|l| DeadLetter {
                    topic: l.original_topic.clone(),
                    partition: l.partition,
                    offset: l.offset,
                    code: l.code().to_owned(),
                    failed_at: l.failed_at.clone(),
                    event_id: l.event_id(),
                    replayable: !l.value_truncated,
                })
                .collect())
        })
    }

    fn replay<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> PortFuture<'a, Result<Replay, StoreError>> {
        Box::pin(async move {
            let broker = self.broker().await?;
            match self.latest(&broker, topic, partition, offset).await? {
                None => Ok(Replay::NoSuchLetter),
                Some(letter) if letter.value_truncated => Ok(Replay::Truncated),
                Some(letter) => Ok(Replay::Replayed { offset: self.replay_letter(&broker, &letter).await? }),
            }
        })
    }
}
