//! Idempotency keys (SPEC §11.1): a retried request gets the answer of its first run, and the
//! effect happens once.
//!
//! A request that carries a key **claims** it before it runs ([`decide_claim`] says what an
//! existing claim means for it). Its effect's transaction writes the answer under the claim
//! through the [`Receipt`] it carries, so that the effect and its answer commit together: a
//! process that dies between commit and reply leaves the answer behind for the retry. A request
//! whose effect spans several transactions (direct issue) writes one **part** per transaction
//! instead, and a retry after a crash resumes from the parts. Answers that changed nothing
//! (refusals) are stored after the reply; answers the service could not give (5xx) free the key.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::port::{PortFuture, StoreError};

/// Whose key, for which operation: keys of different callers, methods or paths never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope {
    /// `user:<id>`, `admin:<digest of the token>` or `anonymous`.
    pub caller: String,
    pub method: String,
    pub path: String,
    pub key: String,
}

/// Digest of a request body (canonical JSON).
pub type Fingerprint = [u8; 32];

/// A stored answer: status and body (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A key this request holds while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: i64,
    /// Fences a holder that lost the claim to a takeover (each takeover counts it up).
    pub token: i64,
    /// What earlier holders of the claim committed, oldest first (see [`Entry::Part`]).
    pub parts: Vec<Vec<u8>>,
}

/// A key as stored, read by a request that found it taken.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub fingerprint: Fingerprint,
    pub leased_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub answer: Option<Answer>,
}

/// What a request makes of a key it found taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// The first run answered: give its answer again.
    Replay(Answer),
    /// Another body under this key: 422 `IDEMPOTENCY_KEY_REUSED`.
    Reused,
    /// The first run is still running: 409 `IDEMPOTENCY_IN_PROGRESS`.
    InProgress,
    /// The holder's lease lapsed without an answer (it died): run again, keeping what its
    /// committed transactions did (`parts`).
    Resume,
    /// The key outlived its time to live: it is free, as if never used.
    Restart,
}

/// The rule of SPEC §11.1 for a key that is already stored.
pub fn decide_claim(stored: &StoredKey, fingerprint: &Fingerprint, now: DateTime<Utc>) -> ClaimDecision {
    if stored.expires_at <= now {
        ClaimDecision::Restart
    } else if stored.fingerprint != *fingerprint {
        ClaimDecision::Reused
    } else if let Some(answer) = &stored.answer {
        ClaimDecision::Replay(answer.clone())
    } else if stored.leased_until > now {
        ClaimDecision::InProgress
    } else {
        ClaimDecision::Resume
    }
}

/// What claiming a key gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This request runs, holding the claim.
    Run(Claim),
    /// See [`ClaimDecision`].
    Replay(Answer),
    Reused,
    InProgress,
}

/// Idempotency keys in the store.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims the key for a run of `lease`, or reads it and applies [`decide_claim`]. A key is
    /// kept for `ttl` after its first claim. After `lease`, a retry may take the key over (its
    /// holder is presumed dead); a holder that is merely slow has lost its claim token, and the
    /// transaction of its effect then fails instead of writing a second effect.
    fn claim<'a>(
        &'a self,
        scope: &'a KeyScope,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> PortFuture<'a, Result<Claimed, StoreError>>;
    /// Stores the answer of a request that changed nothing in a transaction of its own (a
    /// refusal), unless the claim was lost or already answered.
    fn answer<'a>(&'a self, claim: &'a Claim, answer: &'a Answer) -> PortFuture<'a, Result<(), StoreError>>;
    /// Frees the key of a request that could not be answered (5xx), unless it was answered. A
    /// request that committed parts keeps them: its lease ends now, and a retry resumes.
    fn release<'a>(&'a self, claim: &'a Claim) -> PortFuture<'a, Result<(), StoreError>>;
}

/// What a transaction writes under the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The request's final answer.
    Answer(Answer),
    /// One step of a request of several transactions.
    Part(Vec<u8>),
}

type Render = dyn Fn(&dyn Any) -> Option<Entry> + Send + Sync;

/// A claimed key carried into the transaction of the request's effect, which writes what
/// [`Receipt::entry`] renders of its effect under the claim, guarded by the claim token.
///
/// The effect is what the store's operation returns (`Issued`, `Reserved`, `Confirmed`,
/// `Released`, `Revoked`, `Policy`, `CapChange`), handed over as `&dyn Any` so that every port
/// can carry receipts without this module knowing them; the renderer is typed by the request.
#[derive(Clone)]
pub struct Receipt(Arc<ReceiptInner>);

struct ReceiptInner {
    claim: Claim,
    render: Box<Render>,
    recorded: AtomicBool,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("claim", &self.0.claim.id).finish_non_exhaustive()
    }
}

impl Receipt {
    /// `render` turns the request's effect, a `T`, into what is stored for it: the answer the
    /// client will get (the same bytes), a part, or nothing. Any other effect renders nothing.
    pub fn new<T: Any>(claim: Claim, render: impl Fn(&T) -> Option<Entry> + Send + Sync + 'static) -> Self {
        let render = move |effect: &dyn Any| effect.downcast_ref::<T>().and_then(&render);
        Self(Arc::new(ReceiptInner { claim, render: Box::new(render), recorded: AtomicBool::new(false) }))
    }

    pub fn claim(&self) -> &Claim {
        &self.0.claim
    }

    /// What to write for `effect`.
    pub fn entry(&self, effect: &dyn Any) -> Option<Entry> {
        (self.0.render)(effect)
    }

    /// Called by a store that wrote the answer in the effect's transaction (before its commit).
    pub fn mark_answered(&self) {
        self.0.recorded.store(true, Ordering::Release);
    }

    /// Whether the answer went in with the effect; otherwise it is stored after the reply.
    pub fn answered(&self) -> bool {
        self.0.recorded.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, second).single().expect("instant")
    }

    fn stored(answer: Option<Answer>) -> StoredKey {
        StoredKey { fingerprint: [1; 32], leased_until: at(30), expires_at: at(50), answer }
    }

    #[test]
    fn an_answered_key_replays_its_answer_for_the_same_body_only() {
        let answer = Answer { status: 201, body: b"{}".to_vec() };
        let key = stored(Some(answer.clone()));
        assert_eq!(decide_claim(&key, &[1; 32], at(10)), ClaimDecision::Replay(answer));
        assert_eq!(decide_claim(&key, &[2; 32], at(10)), ClaimDecision::Reused);
        assert_eq!(
            decide_claim(&key, &[1; 32], at(40)),
            ClaimDecision::Replay(key.answer.clone().expect("a"))
        );
    }

    #[test]
    fn a_running_key_is_in_progress_until_its_lease_lapses() {
        let key = stored(None);
        assert_eq!(decide_claim(&key, &[1; 32], at(29)), ClaimDecision::InProgress);
        assert_eq!(decide_claim(&key, &[1; 32], at(30)), ClaimDecision::Resume);
        assert_eq!(
            decide_claim(&key, &[2; 32], at(30)),
            ClaimDecision::Reused,
            "another body never takes over"
        );
    }

    #[test]
    fn an_expired_key_is_free_for_any_body() {
        let key = stored(Some(Answer { status: 201, body: Vec::new() }));
        assert_eq!(decide_claim(&key, &[2; 32], at(50)), ClaimDecision::Restart);
        assert_eq!(decide_claim(&key, &[1; 32], at(55)), ClaimDecision::Restart);
    }

    #[test]
    fn a_receipt_renders_its_own_effect_only_and_remembers_that_it_answered() {
        let claim = Claim { id: 7, token: 9, parts: Vec::new() };
        let receipt = Receipt::new(claim.clone(), |n: &u32| Some(Entry::Part(n.to_string().into_bytes())));
        assert_eq!(receipt.claim(), &claim);
        assert_eq!(receipt.entry(&42_u32), Some(Entry::Part(b"42".to_vec())));
        assert_eq!(receipt.entry(&"another effect"), None);
        assert!(!receipt.answered());
        receipt.mark_answered();
        assert!(receipt.clone().answered(), "clones share the flag");
    }
}
