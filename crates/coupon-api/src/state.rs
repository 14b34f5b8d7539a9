//! What the handlers share: the use cases, the clock and the business time zone.

use std::sync::Arc;

use coupon_domain::administration::PolicyAdmin;
use coupon_domain::clock::Clock;
use coupon_domain::issue::Issuing;
use coupon_domain::jobs::Jobs;
use coupon_domain::reservation::Checkout;
use coupon_domain::wallet::WalletStore;

use crate::limits::Limits;

/// The application behind the routes.
#[derive(Clone)]
pub struct AppState {
    pub issuing: Issuing,
    pub policies: PolicyAdmin,
    pub checkout: Checkout,
    pub wallet: Arc<dyn WalletStore>,
    pub jobs: Jobs,
    pub clock: Arc<dyn Clock>,
    /// The business time zone (daily statistics' default range).
    pub zone: chrono_tz::Tz,
    pub limits: Limits,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
