//! The store port of policies. Its writes take the receipt of an idempotent request, so that the
//! answer commits with the policy (SPEC §11.1).

use chrono::{DateTime, Utc};

use crate::id::PolicyId;
use crate::idempotency::Receipt;
use crate::policy::{
    CapChange, CouponCode, CreatePolicyError, NewPolicy, Policy, PolicyStatistics, SavePolicyError,
    SetCapError, UniqueCode,
};
use crate::port::{PortFuture, StoreError};

/// Persists policies.
pub trait PolicyStore: Send + Sync + 'static {
    /// Creates the policy; with a `receipt`, its answer commits with it.
    fn create<'a>(
        &'a self,
        policy: NewPolicy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, CreatePolicyError>>;
    fn get(&self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>>;
    fn find_by_code<'a>(&'a self, code: &'a CouponCode)
    -> PortFuture<'a, Result<Option<Policy>, StoreError>>;
    /// Policies by id, ascending, after `after`.
    /// The unique code `code` (SPEC §11.6), if a job generated it.
    fn find_unique_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<UniqueCode>, StoreError>>;
    fn list(&self, after: Option<PolicyId>, limit: u32) -> PortFuture<'_, Result<Vec<Policy>, StoreError>>;
    /// Writes the editable fields of `policy` if its stored version is still `policy.version`,
    /// and returns it with the next version. Never touches the issue counter.
    fn save<'a>(
        &'a self,
        policy: &'a Policy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, SavePolicyError>>;
    /// Sets the cap if it is not below the issued count at that moment.
    fn set_max_issue_count<'a>(
        &'a self,
        id: PolicyId,
        cap: u32,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CapChange, SetCapError>>;
    fn statistics(
        &self,
        id: PolicyId,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Option<PolicyStatistics>, StoreError>>;
}
