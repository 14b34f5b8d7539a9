//! The HTTP chassis every server of the service runs on: actix-web set-up, the middleware stack
//! (request span, SPEC §5 error envelope, HTTP metrics) and the operational endpoints
//! (`/health/*`, `/metrics`).
//!
//! api-server mounts its business routes on it; event-worker and scheduler serve only the
//! operational endpoints through [`server::AdminServer`]. It knows no business rule and no
//! adapter: dependencies arrive as [`coupon_domain::probe::Probe`]s.

pub mod envelope;
mod middleware;
pub mod ops;
pub mod routing;
pub mod server;

pub use middleware::enveloped;
pub use routing::resource;
