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
