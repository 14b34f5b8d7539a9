//! Kafka adapters: the event envelope, the outbox relay producer, partition-owning consumers and
//! the dead-letter queues (SPEC §6).
//!
//! Kafka is the transport, not a store: what is produced comes from the PostgreSQL outbox and
//! consumer progress lives in PostgreSQL. This crate knows the domain's ports and nothing of
//! PostgreSQL, Redis or HTTP.

pub mod admin;
pub mod asyncapi;
pub mod broker;
pub mod consumer;
mod dead_letter;
pub mod dlq;
pub mod envelope;
mod error;
pub mod inbound;
pub mod relay;
pub mod security;
mod wire;
