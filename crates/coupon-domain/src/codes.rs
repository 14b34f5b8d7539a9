//! Unique single-use codes (SPEC §11.6): a CODE policy in `UNIQUE` mode has no code of its own;
//! a background job generates its codes, each redeemed at most once through a download.
//!
//! Codes are drawn from a CSPRNG ([`Entropy`]) over Crockford's base32 alphabet (no I, L, O, U):
//! each character carries 5 bits, so the default 12 characters carry 60. Uniqueness across all
//! policies is the store's primary key; a code that collides is simply not inserted and the job
//! draws again until it has its count. A job records its progress with each chunk and holds a
//! lease, so a job whose runner died is taken over where it stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::id::{PolicyId, UserId};
use crate::idempotency::Receipt;
use crate::policy::{CodeMode, DistributionType};
use crate::policy_store::PolicyStore;
use crate::port::{PortFuture, StoreError};

/// Crockford's base32 alphabet: digits and letters without I, L, O and U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Codes inserted per statement by a generation job.
pub const CHUNK: usize = 50_000;

/// How long a running job's lease lasts without progress before another runner takes it over.
pub const LEASE: Duration = Duration::from_secs(30);

/// The shape of a job's codes: a prefix, then `length` random characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFormat {
    prefix: String,
    length: u8,
}

/// Why a code format was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct InvalidCodeRequest {
    pub field: &'static str,
    pub message: &'static str,
}

impl CodeFormat {
    pub const DEFAULT_LENGTH: u8 = 12;

    /// # Errors
    /// A prefix longer than 10 or with characters other than `A-Z 0-9`; a length outside 8..=20.
    pub fn new(prefix: Option<&str>, length: Option<i64>) -> Result<Self, InvalidCodeRequest> {
        let prefix = prefix.unwrap_or_default();
        if prefix.len() > 10 || !prefix.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(InvalidCodeRequest { field: "prefix", message: "must be at most 10 of A-Z and 0-9" });
        }
        let length = match length {
            None => Self::DEFAULT_LENGTH,
            Some(n) => u8::try_from(n)
                .ok()
                .filter(|n| (8..=20).contains(n))
                .ok_or(InvalidCodeRequest { field: "length", message: "must be between 8 and 20" })?,
        };
        Ok(Self { prefix: prefix.to_owned(), length })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn length(&self) -> u8 {
        self.length
    }

    /// Random bytes one code takes.
    pub const BYTES: usize = 16;

    /// The code drawn from `random` (16 bytes): 5 of its bits per character, so every character
    /// of the alphabet is equally likely.
    pub fn code(&self, random: &[u8; Self::BYTES]) -> String {
        let mut bits = u128::from_le_bytes(*random);
        let mut code = String::with_capacity(self.prefix.len() + usize::from(self.length));
        code.push_str(&self.prefix);
        for _ in 0..self.length {
            code.push(char::from(ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
        code
    }
}

/// The count of a job: 1 to 10,000,000.
///
/// # Errors
/// Outside the range.
pub fn code_count(count: i64) -> Result<u32, InvalidCodeRequest> {
    u32::try_from(count)
        .ok()
        .filter(|n| (1..=10_000_000).contains(n))
        .ok_or(InvalidCodeRequest { field: "count", message: "must be between 1 and 10000000" })
}

/// A generation job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Running,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Done => "DONE",
            JobState::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [JobState::Running, JobState::Done, JobState::Failed].into_iter().find(|m| m.as_str() == s)
    }
}

/// A generation job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeJob {
    pub id: i64,
    pub policy: PolicyId,
    pub total: u32,
    pub generated: u32,
    pub format: CodeFormat,
    pub state: JobState,
}

/// A generated code, as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code: String,
    pub redeemed: bool,
    pub coupon_id: Option<i64>,
    pub user_id: Option<UserId>,
    pub redeemed_at: Option<DateTime<Utc>>,
}

/// Where codes and jobs are kept.
pub trait CodeStore: Send + Sync + 'static {
    /// A new RUNNING job created at `times.0`, leased to its creator until `times.1`; with a
    /// `receipt`, the request's answer commits with it.
    fn create_job<'a>(
        &'a self,
        policy: PolicyId,
        total: u32,
        format: &'a CodeFormat,
        times: (DateTime<Utc>, DateTime<Utc>),
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CodeJob, StoreError>>;
    fn job(&self, policy: PolicyId, id: i64) -> PortFuture<'_, Result<Option<CodeJob>, StoreError>>;
    /// The policy's latest `limit` jobs, newest first.
    fn jobs(&self, policy: PolicyId, limit: u32) -> PortFuture<'_, Result<Vec<CodeJob>, StoreError>>;
    /// Inserts those of `codes` that no policy has yet, and adds them to the job's progress
    /// (never past its total) in the same transaction, renewing its lease: the job's progress as
    /// it is now. A job no longer RUNNING takes nothing.
    fn insert_codes<'a>(
        &'a self,
        job: &'a CodeJob,
        codes: &'a [String],
        lease_until: DateTime<Utc>,
    ) -> PortFuture<'a, Result<CodeJob, StoreError>>;
    /// Ends a job: DONE, or FAILED with `error`.
    fn finish_job<'a>(
        &'a self,
        id: i64,
        state: JobState,
        error: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<(), StoreError>>;
    /// Takes over RUNNING jobs whose lease lapsed before `now`, leasing them until `lease_until`.
    fn claim_stalled(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Vec<CodeJob>, StoreError>>;
    /// The policy's codes after `after` in code order, at most `limit`.
    fn export_page<'a>(
        &'a self,
        policy: PolicyId,
        after: Option<&'a str>,
        limit: u32,
    ) -> PortFuture<'a, Result<Vec<CodeRecord>, StoreError>>;
}

/// A source of cryptographically secure random bytes.
pub trait Entropy: Send + Sync + 'static {
    /// # Errors
    /// The operating system's generator failed.
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError>;
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `POLICY_NOT_FOUND`
    #[error("no coupon policy has this id")]
    PolicyNotFound,
    /// `INVALID_ISSUE_TYPE`: codes are generated for CODE policies in UNIQUE mode only.
    #[error("codes are generated only for CODE policies with codeMode UNIQUE")]
    NotUnique,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The unique-code use cases: start a job, run it, read its progress, export the codes.
#[derive(Clone)]
pub struct UniqueCodes {
    store: Arc<dyn CodeStore>,
    policies: Arc<dyn PolicyStore>,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for UniqueCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniqueCodes").finish_non_exhaustive()
    }
}

impl UniqueCodes {
    pub fn new(
        store: Arc<dyn CodeStore>,
        policies: Arc<dyn PolicyStore>,
        entropy: Arc<dyn Entropy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, policies, entropy, clock }
    }

    fn lease_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(30))
    }

    /// `POST /api/coupon-policies/{id}/codes`: a RUNNING job, leased to this caller, who runs it
    /// next ([`UniqueCodes::run`]).
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn start(
        &self,
        policy: PolicyId,
        total: u32,
        format: CodeFormat,
        receipt: Option<&Receipt>,
    ) -> Result<CodeJob, StartError> {
        let found = self.policies.get(policy).await?.ok_or(StartError::PolicyNotFound)?;
        if found.distribution != DistributionType::Code || found.code_mode != CodeMode::Unique {
            return Err(StartError::NotUnique);
        }
        let now = self.clock.now();
        Ok(self.store.create_job(policy, total, &format, (now, self.lease_from(now)), receipt).await?)
    }

    /// Generates the job's codes chunk by chunk until it has its count, then marks it DONE. A
    /// failure marks it FAILED (with the error) unless its lease lapses first, in which case a
    /// later [`UniqueCodes::resume_stalled`] takes it over.
    pub async fn run(&self, mut job: CodeJob) {
        while job.state == JobState::Running && job.generated < job.total {
            let wanted = usize::try_from(job.total - job.generated).unwrap_or(CHUNK).min(CHUNK);
            let next = match self.draw(&job.format, wanted) {
                Ok(codes) => self.store.insert_codes(&job, &codes, self.lease_from(self.clock.now())).await,
                Err(e) => Err(e),
            };
            match next {
                Ok(progress) => job = progress,
                Err(e) => {
                    tracing::warn!(job.id = job.id, error = %e, "code generation failed");
                    let message = e.to_string();
                    if let Err(e) = self
                        .store
                        .finish_job(job.id, JobState::Failed, Some(&message), self.clock.now())
                        .await
                    {
                        tracing::warn!(job.id = job.id, error = %e, "a failed code job could not be marked; its lease lapses");
                    }
                    return;
                }
            }
        }
        if job.state == JobState::Running {
            match self.store.finish_job(job.id, JobState::Done, None, self.clock.now()).await {
                Ok(()) => {
                    tracing::info!(job.id = job.id, policy.id = %job.policy, codes = job.total, "unique codes generated")
                }
                Err(e) => {
                    tracing::warn!(job.id = job.id, error = %e, "a finished code job could not be marked; its lease lapses")
                }
            }
        }
    }

    /// Takes over and runs the jobs whose runner stopped (died) before finishing.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn resume_stalled(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let jobs = self.store.claim_stalled(now, self.lease_from(now)).await?;
        let n = jobs.len();
        for job in jobs {
            tracing::info!(
                job.id = job.id,
                generated = job.generated,
                total = job.total,
                "resuming a code job"
            );
            self.run(job).await;
        }
        Ok(n)
    }

    fn draw(&self, format: &CodeFormat, n: usize) -> Result<Vec<String>, StoreError> {
        let mut random = vec![0u8; n * CodeFormat::BYTES];
        self.entropy.fill(&mut random)?;
        Ok(random
            .chunks_exact(CodeFormat::BYTES)
            .filter_map(|bytes| <&[u8; CodeFormat::BYTES]>::try_from(bytes).ok())
            .map(|bytes| format.code(bytes))
            .collect())
    }

    /// # Errors
    /// The store is unavailable.
    pub async fn job(&self, policy: PolicyId, id: i64) -> Result<Option<CodeJob>, StoreError> {
        self.store.job(policy, id).await
    }

    /// The policy's latest `limit` jobs, newest first.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn jobs(&self, policy: PolicyId, limit: u32) -> Result<Vec<CodeJob>, StoreError> {
        self.store.jobs(policy, limit).await
    }

    /// # Errors
    /// The store is unavailable.
    pub async fn export_page(
        &self,
        policy: PolicyId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CodeRecord>, StoreError> {
        self.store.export_page(policy, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_crockford_alphabet_five_bits_a_character() {
        let format = CodeFormat::new(Some("BF24"), None).expect("format");
        let code = format.code(&[0xff; 16]);
        assert_eq!(code, "BF24ZZZZZZZZZZZZ");
        let zeros = format.code(&[0; 16]);
        assert_eq!(zeros, "BF24000000000000");
        let one = format.code(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(one, "BF24100000000000");
        assert!(ALPHABET.iter().all(|c| !b"ILOU".contains(c)));
        let distinct: std::collections::HashSet<u8> = ALPHABET.iter().copied().collect();
        assert_eq!(distinct.len(), 32);
    }

    #[test]
    fn formats_and_counts_are_bounded() {
        assert_eq!(CodeFormat::new(None, None).map(|f| f.length()), Ok(12));
        assert!(CodeFormat::new(Some("lower"), None).is_err());
        assert!(CodeFormat::new(Some("ELEVENCHARS"), None).is_err());
        assert!(CodeFormat::new(None, Some(7)).is_err());
        assert!(CodeFormat::new(None, Some(21)).is_err());
        assert_eq!(CodeFormat::new(None, Some(20)).map(|f| f.code(&[0; 16]).len()), Ok(20));
        assert!(code_count(0).is_err());
        assert!(code_count(10_000_001).is_err());
        assert_eq!(code_count(1_000_000), Ok(1_000_000));
    }
}
