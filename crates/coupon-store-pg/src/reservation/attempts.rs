//! How often a checkout operation starts again after a concurrent change before giving up.

use coupon_domain::port::StoreError;

/// How many times an operation starts again after a concurrent change before giving up.
pub(crate) const ATTEMPTS: usize = 5;

/// The error of an operation that kept meeting concurrent changes.
pub(crate) fn gave_up<E: From<StoreError>>(what: &str) -> E {
    StoreError::Unexpected(anyhow::anyhow!("{what}: still changing after {ATTEMPTS} attempts")).into()
}
