//! Shared shape of the ports. Ports return boxed futures so they are object-safe: use cases hold
//! `Arc<dyn …>` and HTTP handlers are not generic over every adapter (ADR 0004). One allocation per
//! call is noise next to the network round trip behind every port.

use std::future::Future;
use std::pin::Pin;

/// The future a port method returns.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store could not answer. Business outcomes are never expressed with this type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The dependency is down or saturated; the caller may retry later (`SERVICE_UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}
