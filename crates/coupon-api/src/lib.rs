//! The HTTP layer (actix-web): routes, request/response DTOs, authentication, the single error
//! envelope of SPEC §5, and the operational endpoints (`/health/*`, `/metrics`).
//!
//! Handlers translate HTTP into domain use cases and back; no business rule lives here. It knows
//! the domain and nothing of PostgreSQL, Redis or Kafka: dependencies arrive as ports.

pub mod error;
mod middleware;
pub mod ops;
pub mod server;
