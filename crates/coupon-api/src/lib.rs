//! The business HTTP API (actix-web): routes, request/response DTOs, authentication, and the
//! SPEC §5 error codes. It mounts on the `coupon-http` chassis, which writes the error envelope and
//! serves the operational endpoints.
//!
//! Handlers translate HTTP into domain use cases and back; no business rule lives here. It knows
//! the domain and nothing of PostgreSQL, Redis or Kafka: dependencies arrive as ports.

pub mod auth;
pub mod checkout;
pub mod codes;
pub mod console;
pub mod coupons;
pub mod dead_letters;
pub mod docs;
pub mod error;
pub mod idempotency;
pub mod limits;
pub mod policies;
pub mod quote;
pub mod state;
pub mod support;
pub mod wallet;
mod wire;

use actix_web::web;

/// Registers every business route, with the state and admin tokens they need.
///
/// The router tries routes in this order, and each pattern with a `{segment}` it passes costs a
/// regex match; so the hot fixed paths (download, reserve, apply, use) come first, before any
/// pattern with a segment.
pub fn routes(cfg: &mut web::ServiceConfig, state: state::AppState, admin_tokens: auth::AdminTokens) {
    cfg.app_data(web::Data::new(state.keys.clone()))
        .app_data(web::Data::new(state))
        .app_data(web::Data::new(admin_tokens));
    coupons::configure(cfg);
    checkout::configure(cfg);
    coupons::configure_validate(cfg);
    quote::configure(cfg);
    policies::configure(cfg);
    codes::configure(cfg);
    wallet::configure(cfg);
    support::configure(cfg);
    dead_letters::configure(cfg);
    docs::configure(cfg);
    console::configure(cfg);
}
