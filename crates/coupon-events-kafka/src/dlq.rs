//! Operating the DLQ topics (`event-worker dlq list|replay`): read the dead letters back, and
//! produce a letter's original record again on its original topic and partition, once whatever
//! refused it has been put right.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde::{Deserialize, Serialize};

use crate::broker::{Broker, within};
use crate::error::BrokerError;

/// Records fetched per request while reading a DLQ partition.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// A DLQ record, as read back: where it lies, why the record was refused, and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLettered {
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub reason: String,
    pub original_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub failed_at: String,
    /// The record's key and value as received (decoded from the letter's text or base64).
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub value: Vec<u8>,
    /// The letter kept only the first bytes of the value: the record cannot be replayed.
    pub value_truncated: bool,
}

impl DeadLettered {
    /// The reason code without its detail (`PROCESSING_FAILED: …` → `PROCESSING_FAILED`).
    pub fn code(&self) -> &str {
        self.reason.split(':').next().unwrap_or(&self.reason)
    }

    /// The record's `eventId`, when its value is an envelope that has one (the key of its
    /// dedupe row; a record without one never had a row).
    pub fn event_id(&self) -> Option<String> {
        let envelope: serde_json::Value = serde_json::from_slice(&self.value).ok()?;
        envelope.get("eventId")?.as_str().map(str::to_owned)
    }
}

/// The letter's JSON (written by `dead_letter.rs`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Letter {
    reason: String,
    original_topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    key_encoding: Option<String>,
    value: String,
    value_encoding: String,
    value_truncated: bool,
    failed_at: String,
}

fn decode(text: String, encoding: &str) -> Option<Vec<u8>> {
    match encoding {
        "UTF8" => Some(text.into_bytes()),
        "BASE64" => STANDARD.decode(text).ok(),
        _ => None,
    }
}

/// The letter at (`topic`, `partition`, `offset`), or `None` when the value is not a letter.
fn parse(topic: &str, partition: i32, offset: i64, value: &[u8]) -> Option<DeadLettered> {
    let letter: Letter = serde_json::from_slice(value).ok()?;
    let key = match (letter.key, letter.key_encoding) {
        (Some(key), Some(encoding)) => Some(decode(key, &encoding)?),
        _ => None,
    };
    Some(DeadLettered {
        dlq_topic: topic.to_owned(),
        dlq_partition: partition,
        dlq_offset: offset,
        reason: letter.reason,
        original_topic: letter.original_topic,
        partition: letter.partition,
        offset: letter.offset,
        failed_at: letter.failed_at,
        key,
        value: decode(letter.value, &letter.value_encoding)?,
        value_truncated: letter.value_truncated,
    })
}

/// Every letter on `dlq_topic` (all partitions, by partition then offset); records that are not
/// letters are skipped. A topic that does not exist has none.
///
/// # Errors
/// The broker failed or timed out.
pub async fn read(broker: &Broker, dlq_topic: &str) -> Result<Vec<DeadLettered>, BrokerError> {
    let Some(partitions) = broker.partitions(dlq_topic).await? else { return Ok(Vec::new()) };
    let mut letters = Vec::new();
    for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        let client = within(
            broker.timeout(),
            broker.client().partition_client(dlq_topic, partition, UnknownTopicHandling::Error),
        )
        .await?;
        let mut offset = 0;
        loop {
            let (records, high_watermark) =
                within(broker.timeout(), client.fetch_records(offset, 1..FETCH_BYTES, 500)).await?;
            for record in &records {
                let value = record.record.value.as_deref().unwrap_or_default();
                letters.extend(parse(dlq_topic, partition, record.offset, value));
            }
            match records.last() {
                Some(last) if last.offset + 1 < high_watermark => offset = last.offset + 1,
                _ => break,
            }
        }
    }
    Ok(letters)
}

/// Produces the letter's record again, key and value as received, on its original topic and
/// partition (so it keeps its place among the records of its key). Returns its new offset. The
/// caller refuses a letter whose value was truncated.
///
/// # Errors
/// The broker failed.
pub async fn replay(broker: &Broker, letter: &DeadLettered, now: DateTime<Utc>) -> Result<i64, BrokerError> {
    let client = within(
        broker.timeout(),
        broker.client().partition_client(
            &letter.original_topic,
            letter.partition,
            UnknownTopicHandling::Error,
        ),
    )
    .await?;
    let record = Record {
        key: letter.key.clone(),
        value: Some(letter.value.clone()),
        headers: BTreeMap::new(),
        timestamp: now,
    };
    let offsets = within(broker.timeout(), client.produce(vec![record], Compression::NoCompression)).await?;
    Ok(offsets.first().copied().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_gives_back_the_record_as_received() {
        let text = br#"{"reason":"PROCESSING_FAILED: timeout","originalTopic":"payment.completed.v1","partition":2,"offset":41,
            "key":"1001","keyEncoding":"UTF8","value":"/w==","valueEncoding":"BASE64","valueBytes":1,
            "valueTruncated":false,"failedAt":"2026-12-06T10:00:00Z"}"#;
        let letter = parse("payment.completed.v1.DLQ", 0, 7, text).expect("a letter");
        assert_eq!(
            (letter.code(), letter.key.as_deref(), letter.value.as_slice(), letter.offset),
            ("PROCESSING_FAILED", Some(&b"1001"[..]), &[0xff_u8][..], 41)
        );
        assert_eq!(letter.event_id(), None, "not an envelope");
        assert!(parse("t.DLQ", 0, 8, b"{not a letter").is_none());
    }
}
