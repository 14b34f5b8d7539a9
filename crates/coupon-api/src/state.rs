//! What the handlers share: the use cases and the clock.

use std::sync::Arc;

use coupon_domain::administration::PolicyAdmin;
use coupon_domain::clock::Clock;
use coupon_domain::issue::Issuing;

use crate::limits::Limits;

/// The application behind the routes.
#[derive(Clone)]
pub struct AppState {
    pub issuing: Issuing,
    pub policies: PolicyAdmin,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
