//! Dead letters (SPEC §10): the records of the consumed topics that were refused and written to
//! `{topic}.DLQ`, as operators read them back, and their replay once whatever refused them has been
//! put right. Where they are kept (Kafka) is the adapters' business.

use crate::port::{PortFuture, StoreError};

/// A dead letter: where its record lay, why it was refused, and whether it can be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The consumed topic the record came from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The reason code (`PAYMENT_MISMATCH`, `INVALID_EVENT`, …), without its detail.
    pub code: String,
    /// When the record was refused, as the letter says (RFC 3339).
    pub failed_at: String,
    /// The record's `eventId`, when its value is an envelope that has one.
    pub event_id: Option<String>,
    /// The letter kept the whole value: only then can the record be produced again.
    pub replayable: bool,
}

/// Which letters to list; `None` fields take all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterFilter {
    /// A consumed topic.
    pub topic: Option<String>,
    /// A reason code.
    pub code: Option<String>,
}

impl LetterFilter {
    pub fn admits(&self, letter: &DeadLetter) -> bool {
        self.topic.as_deref().is_none_or(|t| t == letter.topic)
            && self.code.as_deref().is_none_or(|c| c == letter.code)
    }
}

/// What a replay came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Produced again on its topic and partition, at this offset.
    Replayed { offset: i64 },
    /// No letter of that record.
    NoSuchLetter,
    /// The letter kept only the first bytes of the value.
    Truncated,
}

/// The dead letters of the consumed topics.
pub trait DeadLetters: Send + Sync + 'static {
    /// The letters that `filter` admits, by topic, partition and offset.
    fn list<'a>(&'a self, filter: &'a LetterFilter) -> PortFuture<'a, Result<Vec<DeadLetter>, StoreError>>;
    /// Produces the record at (`topic`, `partition`, `offset`) again, as its latest letter kept
    /// it, after forgetting its dedupe row, so that the consumers apply it instead of skipping it.
    fn replay<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> PortFuture<'a, Result<Replay, StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(topic: &str, code: &str) -> DeadLetter {
        DeadLetter {
            topic: topic.into(),
            partition: 0,
            offset: 1,
            code: code.into(),
            failed_at: "2026-12-07T00:00:00Z".into(),
            event_id: None,
            replayable: true,
        }
    }

    #[test]
    fn a_filter_admits_by_topic_and_code() {
        let mismatch = letter("payment.completed.v1", "PAYMENT_MISMATCH");
        assert!(LetterFilter::default().admits(&mismatch));
        assert!(LetterFilter { topic: Some("payment.completed.v1".into()), code: None }.admits(&mismatch));
        assert!(!LetterFilter { topic: Some("order.cancelled".into()), code: None }.admits(&mismatch));
        assert!(!LetterFilter { topic: None, code: Some("INVALID_EVENT".into()) }.admits(&mismatch));
    }
}
