//! Recently read policies, for the issuing path.
//!
//! Every issue reads its policy, and under a first-come burst that is thousands of identical reads
//! a second. A snapshot up to [`CachedPolicies`]' time-to-live old is safe for issuing: the store
//! re-checks activity, window, channel and stock in the issuing transaction, and the first-come
//! gate only errs towards admitting with an old cap. Admin reads go to the store directly, and
//! writes through this wrapper drop the entry at once.
//!
//! When a snapshot expires, one caller reads the policy again while the others keep answering
//! with the old snapshot, for at most another time-to-live (then the next caller tries again).
//! Without that, every request of a burst that arrived during the read went to PostgreSQL too:
//! a herd of reads each time-to-live, queueing for the pool, which showed as a tail of hundreds of
//! milliseconds in the sold-out burst.
//!
//! An id that names no policy is remembered too, for the same time-to-live: otherwise every
//! request for it cost PostgreSQL a query. A policy created on another instance is therefore
//! unknown here for up to one time-to-live (a policy created through this wrapper is not).
//! Unknown codes are not remembered: guessing them is limited per caller, not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::id::PolicyId;
use crate::idempotency::Receipt;
use crate::policy::{
    CapChange, CouponCode, CreatePolicyError, NewPolicy, Policy, PolicyStatistics, SavePolicyError,
    SetCapError, UniqueCode,
};
use crate::policy_store::PolicyStore;
use crate::port::{PortFuture, StoreError};

/// A `PolicyStore` that remembers policies read within the last `ttl`.
pub struct CachedPolicies {
    inner: Arc<dyn PolicyStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    by_id: Mutex<HashMap<PolicyId, Snapshot>>,
    by_code: Mutex<HashMap<String, PolicyId>>,
}

struct Snapshot {
    read_at: DateTime<Utc>,
    /// `None`: no policy has this id.
    policy: Option<Policy>,
    /// A caller started reading the policy again then.
    refreshing_since: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for CachedPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedPolicies").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl CachedPolicies {
    pub fn new(inner: Arc<dyn PolicyStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self { inner, clock, ttl, by_id: Mutex::default(), by_code: Mutex::default() }
    }

    /// The snapshot to answer with, or `None` when this caller must read the store: there is no
    /// snapshot, or it expired and nobody started reading it again within the time-to-live (this
    /// caller now does).
    fn snapshot(&self, id: PolicyId) -> Option<Option<Policy>> {
        let now = self.clock.now();
        let mut entries = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = entries.get_mut(&id)?;
        let refreshing = snapshot.refreshing_since.is_some_and(|since| now - since < self.ttl);
        if now - snapshot.read_at < self.ttl || refreshing {
            return Some(snapshot.policy.clone());
        }
        snapshot.refreshing_since = Some(now);
        None
    }

    /// Remembers what the store answered for `id`.
    fn remember(&self, id: PolicyId, policy: Option<&Policy>) {
        let now = self.clock.now();
        if let Some(code) = policy.and_then(|p| p.code.as_ref()) {
            self.by_code.lock().unwrap_or_else(PoisonError::into_inner).insert(code.as_str().to_owned(), id);
        }
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Snapshot { read_at: now, policy: policy.cloned(), refreshing_since: None });
    }

    fn forget(&self, id: PolicyId) {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

impl PolicyStore for CachedPolicies {
    fn create<'a>(
        &'a self,
        policy: NewPolicy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, CreatePolicyError>> {
        Box::pin(async move {
            let created = self.inner.create(policy, now, receipt).await?;
            // Its id may have been asked for (and remembered as unknown) before.
            self.forget(created.id);
            Ok(created)
        })
    }

    fn get(&self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            if let Some(policy) = self.snapshot(id) {
                return Ok(policy);
            }
            let policy = self.inner.get(id).await?;
            self.remember(id, policy.as_ref());
            Ok(policy)
        })
    }

    fn find_by_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            let known =
                self.by_code.lock().unwrap_or_else(PoisonError::into_inner).get(code.as_str()).copied();
            if let Some(policy) = known.and_then(|id| self.snapshot(id)).flatten() {
                return Ok(Some(policy));
            }
            // Unknown codes are not remembered: guessing is rate-limited, not cached.
            let policy = self.inner.find_by_code(code).await?;
            if let Some(p) = &policy {
                self.remember(p.id, Some(p));
            }
            Ok(policy)
        })
    }

    /// Not remembered: a policy may have millions of unique codes, each redeemed once.
    fn find_unique_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<UniqueCode>, StoreError>> {
        self.inner.find_unique_code(code)
    }

    fn list(&self, after: Option<PolicyId>, limit: u32) -> PortFuture<'_, Result<Vec<Policy>, StoreError>> {
        self.inner.list(after, limit)
    }

    fn save<'a>(
        &'a self,
        policy: &'a Policy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, SavePolicyError>> {
        self.forget(policy.id);
        self.inner.save(policy, now, receipt)
    }

    fn set_max_issue_count<'a>(
        &'a self,
        id: PolicyId,
        cap: u32,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CapChange, SetCapError>> {
        self.forget(id);
        self.inner.set_max_issue_count(id, cap, now, receipt)
    }

    fn statistics(
        &self,
        id: PolicyId,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Option<PolicyStatistics>, StoreError>> {
        self.inner.statistics(id, now)
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::{Clock, SystemClock};
    use futures::FutureExt;

    use super::*;
    use crate::fakes::{InMemoryPolicyStore, ManualClock, block_on, policy};
    use crate::policy::DistributionType;

    fn fixture() -> (Arc<InMemoryPolicyStore>, Arc<ManualClock>, CachedPolicies, Policy) {
        let now = SystemClock.now();
        let cached = policy(1, DistributionType::Code, None, now);
        let store = Arc::new(InMemoryPolicyStore::with([cached.clone()]));
        let clock = Arc::new(ManualClock::at(now));
        let cache = CachedPolicies::new(store.clone(), clock.clone(), Duration::seconds(1));
        (store, clock, cache, cached)
    }

    #[test]
    fn reads_within_the_ttl_are_served_from_memory_and_expire_after_it() {
        let (store, clock, cache, cached) = fixture();
        for _ in 0..3 {
            assert!(block_on(cache.get(cached.id)).expect("read").is_some());
        }
        assert_eq!(store.reads(), 1);
        let code = CouponCode::parse("code1").expect("code");
        assert!(block_on(cache.find_by_code(&code)).expect("read").is_some());
        assert_eq!(store.reads(), 1, "the code maps to the remembered policy");

        clock.advance(Duration::milliseconds(1001));
        block_on(cache.get(cached.id)).expect("read");
        assert_eq!(store.reads(), 2);
    }

    #[test]
    fn while_one_caller_reads_an_expired_policy_again_the_others_keep_the_old_snapshot() {
        let (store, clock, cache, cached) = fixture();
        block_on(cache.get(cached.id)).expect("read");
        clock.advance(Duration::milliseconds(1500));
        store.stalled.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(cache.get(cached.id).now_or_never().is_none(), "this caller's read is in flight");
        for _ in 0..3 {
            assert!(block_on(cache.get(cached.id)).expect("read").is_some());
        }
        assert_eq!(store.reads(), 2, "one read in flight, the others answered from memory");

        // The read in flight never finished: after another time-to-live, the next caller reads.
        clock.advance(Duration::milliseconds(1000));
        store.stalled.store(false, std::sync::atomic::Ordering::SeqCst);
        block_on(cache.get(cached.id)).expect("read");
        assert_eq!(store.reads(), 3);
    }

    #[test]
    fn writes_drop_the_entry_and_unknown_codes_are_not_remembered() {
        let (store, _, cache, cached) = fixture();
        block_on(cache.get(cached.id)).expect("read");
        block_on(cache.save(&cached, SystemClock.now(), None)).expect("save");
        block_on(cache.get(cached.id)).expect("read");
        assert_eq!(store.reads(), 2);

        let unknown = CouponCode::parse("NOPE").expect("code");
        for _ in 0..2 {
            assert!(block_on(cache.find_by_code(&unknown)).expect("read").is_none());
        }
        assert_eq!(store.reads(), 4);
    }

    #[test]
    fn an_id_that_names_no_policy_is_remembered_for_the_ttl() {
        let (store, clock, cache, _) = fixture();
        let missing = PolicyId::new(404).expect("id");
        for _ in 0..5 {
            assert!(block_on(cache.get(missing)).expect("read").is_none());
        }
        assert_eq!(store.reads(), 1, "one read for five requests");
        clock.advance(Duration::milliseconds(1001));
        block_on(cache.get(missing)).expect("read");
        assert_eq!(store.reads(), 2);
    }
}
