//! The DLQ record (`{topic}.DLQ`, SPEC §6 and §10): a consumed record that was not applied, with
//! its origin and the reason.
//!
//! A DLQ record must be writable whatever the record held, or the partition behind it stalls:
//! the record's key and value are kept as text when they are plain UTF-8, and in base64 otherwise
//! (`keyEncoding`, `valueEncoding`). The outbox row's key (`event_key VARCHAR(100)`, PostgreSQL
//! text cannot hold NUL) is the original key only when it fits; else the DLQ record has an empty
//! key and the original stays in the payload. A value longer than [`MAX_VALUE_BYTES`] is cut
//! there (`valueTruncated`, with its full size in `valueBytes`), so the DLQ record stays within
//! a broker's default message size (1 MiB) even after escaping.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coupon_domain::consume::DeadLetter;
use coupon_domain::event::EncodedEvent;
use serde::Serialize;

use crate::wire::instant;

/// Longest key the outbox row can carry (`event_key VARCHAR(100)`).
const MAX_KEY_CHARS: usize = 100;
/// Most bytes of a record's value a DLQ record keeps.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Most characters of a reason (a code with the error that caused it).
const MAX_REASON_CHARS: usize = 1_000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mismatches: Vec<MismatchJson<'a>>,
    original_topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<String>,
    key_encoding: Option<&'static str>,
    value: String,
    value_encoding: &'static str,
    value_bytes: usize,
    value_truncated: bool,
    failed_at: String,
}

#[derive(Serialize)]
struct MismatchJson<'a> {
    field: &'a str,
    expected: &'a str,
    received: &'a str,
}

/// Text as it is, when it is UTF-8 without control characters other than tab and line breaks
/// (escaping those at most doubles its size); base64 otherwise.
fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => {
            (text.to_owned(), "UTF8")
        }
        _ => (STANDARD.encode(bytes), "BASE64"),
    }
}

/// The key for the outbox row: the original one when it fits the column as text.
fn row_key(key: Option<&[u8]>) -> String {
    key.and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| k.chars().count() <= MAX_KEY_CHARS && !k.contains('\0'))
        .unwrap_or_default()
        .to_owned()
}

/// `reason` cut at a character boundary.
fn bounded(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

pub(crate) fn encode_dead_letter(letter: &DeadLetter<'_>) -> anyhow::Result<EncodedEvent> {
    let delivery = letter.delivery;
    let key = delivery.key.as_deref().map(encode);
    let kept = &delivery.value[..delivery.value.len().min(MAX_VALUE_BYTES)];
    let (value, value_encoding) = encode(kept);
    let payload = Payload {
        reason: bounded(&letter.refusal.reason),
        mismatches: letter
            .refusal
            .mismatches
            .iter()
            .map(|m| MismatchJson { field: m.field, expected: &m.expected, received: &m.received })
            .collect(),
        original_topic: &letter.source.topic,
        partition: letter.source.partition,
        offset: delivery.offset,
        key_encoding: key.as_ref().map(|(_, encoding)| *encoding),
        key: key.map(|(text, _)| text),
        value,
        value_encoding,
        value_bytes: delivery.value.len(),
        value_truncated: kept.len() < delivery.value.len(),
        failed_at: instant(letter.failed_at),
    };
    Ok(EncodedEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        topic: letter.source.dead_letter_topic.clone(),
        key: row_key(delivery.key.as_deref()),
        event_type: "DEAD_LETTER",
        payload: serde_json::to_string(&payload)?,
    })
}

#[cfg(test)]
mod tests {
    use coupon_domain::clock::{Clock, SystemClock};

    use coupon_domain::consume::{Delivery, Refusal, Source};
    use coupon_domain::reservation::Mismatch;
    use serde_json::Value;

    use super::*;

    fn letter_for(key: Option<Vec<u8>>, value: Vec<u8>, check: impl FnOnce(EncodedEvent, Value)) {
        let source =
            Source { topic: "payment.completed.v1".into(), partition: 2, dead_letter_topic: "p.DLQ".into() };
        let delivery = Delivery { offset: 7, key, value, parsed: Err("MALFORMED_JSON".into()) };
        let refusal = Refusal {
            reason: "PAYMENT_MISMATCH".into(),
            mismatches: vec![Mismatch { field: "userId", expected: "1".into(), received: "2".into() }],
        };
        let letter = DeadLetter {
            source: &source,
            delivery: &delivery,
            refusal: &refusal,
            failed_at: SystemClock.now(),
        };
        let event = encode_dead_letter(&letter).expect("encodes");
        let payload: Value = serde_json::from_str(&event.payload).expect("json");
        check(event, payload);
    }

    #[test]
    fn plain_records_are_kept_as_text() {
        letter_for(Some(b"1001".to_vec()), br#"{"eventId":"e"}"#.to_vec(), |event, p| {
            assert_eq!((event.topic.as_str(), event.key.as_str()), ("p.DLQ", "1001"));
            assert_eq!(p["key"], "1001");
            assert_eq!(p["keyEncoding"], "UTF8");
            assert_eq!(p["value"], r#"{"eventId":"e"}"#);
            assert_eq!(p["valueEncoding"], "UTF8");
            assert_eq!(p["valueTruncated"], false);
            assert_eq!(
                (p["originalTopic"].as_str(), p["partition"].as_i64()),
                (Some("payment.completed.v1"), Some(2))
            );
            assert_eq!(p["mismatches"][0]["received"], "2");
        });
    }

    #[test]
    fn keys_and_values_that_are_not_plain_text_are_kept_in_base64() {
        let long_key = "k".repeat(150);
        letter_for(Some(long_key.clone().into_bytes()), vec![0xff, 0x00, b'a'], |event, p| {
            assert_eq!(event.key, "", "a key longer than the column is left out of the row");
            assert_eq!(
                (p["key"].as_str(), p["keyEncoding"].as_str()),
                (Some(long_key.as_str()), Some("UTF8"))
            );
            assert_eq!(p["valueEncoding"], "BASE64");
            assert_eq!(
                STANDARD.decode(p["value"].as_str().expect("value")).expect("base64"),
                [0xff, 0x00, b'a']
            );
        });
        letter_for(Some(b"a\0b".to_vec()), b"nul \0 inside".to_vec(), |event, p| {
            assert_eq!(event.key, "");
            assert_eq!(p["keyEncoding"], "BASE64");
            assert_eq!(p["valueEncoding"], "BASE64");
        });
        letter_for(None, Vec::new(), |event, p| {
            assert_eq!(event.key, "");
            assert_eq!((p["key"].is_null(), p["keyEncoding"].is_null()), (true, true));
            assert_eq!(p["value"], "");
        });
    }

    #[test]
    fn huge_values_are_cut() {
        letter_for(None, vec![b'x'; MAX_VALUE_BYTES + 10], |event, p| {
            assert_eq!(p["valueTruncated"], true);
            assert_eq!(p["valueBytes"], MAX_VALUE_BYTES + 10);
            assert!(event.payload.len() < MAX_VALUE_BYTES + 1_000);
        });
    }
}
