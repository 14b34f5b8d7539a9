//! `event-worker dlq list|replay`: the DLQ runbook as commands. `list` prints the dead letters of
//! the consumed topics as JSON lines; `replay` forgets the record's dedupe row and produces it
//! again on its original topic and partition, where the consumers apply it like any record.
//! Replay once whatever refused the record has been put right; a record refused again goes to
//! the DLQ again.

use anyhow::{Context, bail};
use coupon_domain::dead_letters::LetterFilter;
use coupon_events_kafka::dlq::DeadLettered;
use coupon_runtime::settings::Settings;
use coupon_wiring::dead_letters::KafkaDeadLetters;

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

fn letter_filter(filter: &Filter) -> LetterFilter {
    LetterFilter { topic: filter.topic.clone(), code: filter.reason.clone() }
}

/// The dead letters of the consumed topics that match `filter`, by topic, partition and offset.
///
/// # Errors
/// Kafka is unreachable.
pub async fn list(settings: &Settings, filter: &Filter) -> anyhow::Result<Vec<DeadLettered>> {
    let letters = KafkaDeadLetters::new(settings, coupon_wiring::pg_pool(settings)?)?;
    let broker = letters.broker().await.context("connecting to Kafka")?;
    Ok(letters.letters(&broker, &letter_filter(filter)).await?)
}

/// Produces the selected records again. Each record's dedupe row is forgotten first, so that the
/// consumers apply it rather than skip it as a duplicate.
///
/// # Errors
/// Nothing matches, a letter kept only part of its value, or Kafka or PostgreSQL failed; the
/// records replayed before the failure stay replayed.
pub async fn replay(settings: &Settings, selection: &Selection) -> anyhow::Result<Vec<Replayed>> {
    let letters = KafkaDeadLetters::new(settings, coupon_wiring::pg_pool(settings)?)?;
    let broker = letters.broker().await.context("connecting to Kafka")?;
    let chosen = match selection {
        Selection::Record { topic, partition, offset } => {
            match letters.latest(&broker, topic, *partition, *offset).await? {
                Some(letter) => vec![letter],
                None => bail!("no DLQ record of {topic} partition {partition} offset {offset}"),
            }
        }
        Selection::Matching(filter) => letters.letters(&broker, &letter_filter(filter)).await?,
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
    let mut replayed = Vec::with_capacity(chosen.len());
    for letter in chosen {
        let offset = letters.replay_letter(&broker, &letter).await.context("replaying the record")?;
        replayed.push(Replayed { letter, offset });
    }
    Ok(replayed)
}
