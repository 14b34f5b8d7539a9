//! What the handlers share: the use cases, the clock and the business time zone.

use std::sync::Arc;

use coupon_domain::administration::PolicyAdmin;
use coupon_domain::clock::Clock;
use coupon_domain::codes::UniqueCodes;
use coupon_domain::dead_letters::DeadLetters;
use coupon_domain::issue::Issuing;
use coupon_domain::jobs::Jobs;
use coupon_domain::quote::Quoting;
use coupon_domain::reservation::Checkout;
use coupon_domain::support::Support;
use coupon_domain::wallet::WalletStore;

use coupon_domain::limits::Guard;

use crate::idempotency::Keys;
use crate::limits::TrustedProxies;

/// The application behind the routes.
#[derive(Clone)]
pub struct AppState {
    pub issuing: Issuing,
    pub policies: PolicyAdmin,
    pub checkout: Checkout,
    pub quotes: Quoting,
    pub codes: UniqueCodes,
    pub support: Support,
    pub wallet: Arc<dyn WalletStore>,
    pub jobs: Jobs,
    /// The consumed topics' dead letters (on Kafka).
    pub dead_letters: Arc<dyn DeadLetters>,
    pub clock: Arc<dyn Clock>,
    /// The business time zone (daily statistics' default range).
    pub zone: chrono_tz::Tz,
    /// The abuse limits of code checks (downloads apply them in `Issuing`).
    pub guard: Guard,
    /// Who may name the client in `X-Forwarded-For` (the address code guessers are blocked by).
    pub proxies: TrustedProxies,
    /// Idempotency keys (SPEC §11.1).
    pub keys: Keys,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
