//! How a request to the broker failed.

use std::time::Duration;

/// A Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("Kafka request failed: {0}")]
    Client(#[from] rskafka::client::error::Error),
    #[error("Kafka did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Kafka admin request failed: {0}")]
    Admin(String),
    #[error("invalid Kafka security settings: {0}")]
    Security(String),
    #[error("Kafka refused the connection: {0}")]
    Refused(String),
}

impl BrokerError {
    /// Why the brokers refused this client, as a readiness reason: `AUTH_FAILED` for SASL
    /// credentials refused, the TLS reasons of `coupon-tls`; `None` for anything else. rskafka
    /// keeps the causes of a failed connection only in its error's text.
    pub fn refusal(&self) -> Option<&'static str> {
        let text = format!("{self} {self:?}");
        if ["SaslFailed(", "Sasl handshake failed", "SASL authentication failed"]
            .iter()
            .any(|sign| text.contains(sign))
        {
            return Some("AUTH_FAILED");
        }
        coupon_tls::failure_reason_in(&text)
    }
}
