//! `event-worker dlq list|replay`: the DLQ runbook as commands. `list` prints the dead letters of
//! the consumed topics as JSON lines; `replay` forgets the record's dedupe row and produces it
//! again on its original topic and partition, where the consumers apply it like any record.
//! Replay once whatever refused the record has been put right; a record refused again goes to
//! the DLQ again.

use anyhow::{Context, bail};
use coupon_domain::clock::{Clock, SystemClock};
use coupon_events_kafka::broker::Broker;
use coupon_events_kafka::dlq::{self, DeadLettered};
use coupon_runtime::settings::Settings;
use coupon_store_pg::inbox::PgInbox;

/// Which dead letters a command is about.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only letters of this consumed topic.
    pub topic: Option<String>,
    /// Only letters with this reason code.
    pub reason: Option<String>,
}

/// What `replay` produces again.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The record at `topic`/`partition`/`offset`, as `list` shows it (its latest letter).
    Record { topic: String, partition: i32, offset: i64 },
    /// Every letter matching the filter.
    Matching(Filter),
}

/// A letter produced again, and the offset of its new record.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub letter: DeadLettered,
    pub offset: i64,
}

async fn broker(settings: &Settings) -> anyhow::Result<Broker> {
    let config = coupon_wiring::broker_config(settings, "coupon-dlq")?;
    Broker::connect(&config).await.context("connecting to Kafka")
}

async fn letters(broker: &Broker, settings: &Settings, filter: &Filter) -> anyhow::Result<Vec<DeadLettered>> {
    let mut letters = Vec::new();
    for topic in settings.kafka.topics.consumed() {
        if filter.topic.as_deref().is_some_and(|wanted| wanted != topic) {
            continue;
        }
        let read = dlq::read(broker, &format!("{topic}.DLQ"))
            .await
            .with_context(|| format!("reading {topic}.DLQ"))?;
        letters.extend(read.into_iter().filter(|l| filter.reason.as_deref().is_none_or(|r| l.code() == r)));
    }
    Ok(letters)
}

/// The dead letters of the consumed topics that match `filter`, by topic, partition and offset.
///
/// # Errors
/// Kafka is unreachable.
pub async fn list(settings: &Settings, filter: &Filter) -> anyhow::Result<Vec<DeadLettered>> {
    letters(&broker(settings).await?, settings, filter).await
}

/// Produces the selected records again. Each record's dedupe row is forgotten first, so that the
/// consumers apply it rather than skip it as a duplicate.
///
/// # Errors
/// Nothing matches, a letter kept only part of its value, or Kafka or PostgreSQL failed; the
/// records replayed before the failure stay replayed.
pub async fn replay(settings: &Settings, selection: &Selection) -> anyhow::Result<Vec<Replayed>> {
    let broker = broker(settings).await?;
    let chosen = match selection {
        Selection::Record { topic, partition, offset } => {
            let filter = Filter { topic: Some(topic.clone()), reason: None };
            let found = letters(&broker, settings, &filter)
                .await?
                .into_iter()
                .rev()
                .find(|l| l.original_topic == *topic && l.partition == *partition && l.offset == *offset);
            match found {
                Some(letter) => vec![letter],
                None => bail!("no DLQ record of {topic} partition {partition} offset {offset}"),
            }
        }
        Selection::Matching(filter) => letters(&broker, settings, filter).await?,
    };
    if chosen.is_empty() {
        bail!("no DLQ record matches");
    }
    if let Some(cut) = chosen.iter().find(|l| l.value_truncated) {
        bail!(
            "{} partition {} offset {}: the DLQ kept only the first bytes of its value; it cannot be replayed",
            cut.original_topic,
            cut.partition,
            cut.offset
        );
    }
    let inbox = PgInbox::new(
        coupon_wiring::pg_pool(settings)?,
        coupon_wiring::encoder(settings),
        settings.coupon.timezone,
    );
    let mut replayed = Vec::with_capacity(chosen.len());
    for letter in chosen {
        if let Some(event_id) = letter.event_id() {
            inbox.forget(&letter.original_topic, &event_id).await.context("forgetting the dedupe row")?;
        }
        let offset =
            dlq::replay(&broker, &letter, SystemClock.now()).await.context("producing the record again")?;
        tracing::info!(topic = %letter.original_topic, partition = letter.partition, offset = letter.offset,
            new_offset = offset, reason = %letter.reason, "DLQ record replayed");
        replayed.push(Replayed { letter, offset });
    }
    Ok(replayed)
}
