//! The consumed-record use case: what a batch of one partition's records does, record by record,
//! inside the inbox's transaction (SPEC §3.3, §6).
//!
//! In record order: a record whose `eventId` was applied before, or appears earlier in the batch,
//! is a duplicate; a record that could not be read goes to the DLQ with its reason; any other
//! record runs its [`Intent`], and a refusal of it goes to the DLQ with the reason its error means
//! (`ConfirmError::refusal` and its siblings). Consecutive confirmations of distinct reservations
//! are handed to the store together, so that it can decide them in one round. DLQ records keep the
//! order of their records.
//!
//! The store runs [`apply_records`] inside the transaction that also checks and moves the
//! partition's offset and records each `eventId`: it owns the transaction, each effect's
//! isolation (one refused effect undoes only its own writes) and the retries after a concurrent
//! change; this module owns what every record means.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Command, DeadLetter, Delivery, Intent, Outcome, Refusal, Source};
use crate::context::EventContext;
use crate::id::{CouponId, PolicyId};
use crate::issue::{IssueCommand, IssueError};
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};
use crate::reservation::{
    CancelReason, ConfirmError, ConfirmRequest, ExternalRef, ReleaseError, ReleasedBy, ReservationId,
    RestoreError,
};

/// A confirmation of a consumed `payment.completed`, with the context of its event.
#[derive(Debug, Clone)]
pub struct Confirmation<'a> {
    pub request: &'a ConfirmRequest,
    pub context: EventContext,
}

/// The effects a consumed record can have, inside the inbox's transaction. Each effect is
/// isolated: when it is refused, what it wrote is undone and the transaction goes on. A refusal
/// is the operation's own error; a [`StoreError`] inside it aborts the whole batch.
pub trait RecordEffects: Send {
    /// Which of `event_ids` were applied before on `topic`.
    fn applied_before<'a>(
        &'a mut self,
        topic: &'a str,
        event_ids: &'a [&'a str],
    ) -> PortFuture<'a, Result<HashSet<String>, StoreError>>;
    /// Confirms distinct reservations; one answer per confirmation, in order.
    fn confirm<'a>(
        &'a mut self,
        confirmations: &'a [Confirmation<'a>],
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<Vec<Result<(), ConfirmError>>, StoreError>>;
    /// Releases a reservation, as `by` and for `reason`.
    fn release<'a>(
        &'a mut self,
        reservation: &'a ReservationId,
        by: ReleasedBy<'a>,
        reason: CancelReason,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), ReleaseError>>;
    /// Releases the order's hold on the coupon, or restores the coupon the order used.
    fn cancel_order<'a>(
        &'a mut self,
        coupon: CouponId,
        order: &'a ExternalRef,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), RestoreError>>;
    /// The policy as it is now.
    fn policy(&mut self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>>;
    /// Issues the planned coupon with its `coupon.issued` event, under the policy's caps (see
    /// [`crate::issue::CouponStore::issue`]).
    fn issue<'a>(&'a mut self, command: IssueCommand<'a>) -> PortFuture<'a, Result<(), IssueError>>;
    /// Appends the record, with its reason and origin, to the outbox for `{topic}.DLQ`.
    fn dead_letter<'a>(&'a mut self, letter: DeadLetter<'a>) -> PortFuture<'a, Result<(), StoreError>>;
}

/// A partition's records, as the inbox's transaction applies them.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    pub source: &'a Source,
    pub deliveries: &'a [Delivery],
    pub now: DateTime<Utc>,
    /// Business time zone: an EVENT coupon expires at the end of its last day there.
    pub zone: Tz,
}

/// What each of `records` becomes (one [`Outcome`] per delivery, in order), its effects done
/// through `effects`.
///
/// # Errors
/// A store failure: the caller rolls the whole batch back.
pub async fn apply_records(
    effects: &mut dyn RecordEffects,
    records: Records<'_>,
) -> Result<Vec<Outcome>, StoreError> {
    let ids: Vec<&str> = records
        .deliveries
        .iter()
        .filter_map(|d| d.parsed.as_ref().ok())
        .map(|p| p.event_id.as_str())
        .collect();
    let seen = effects.applied_before(&records.source.topic, &ids).await?;
    let mut batch = Batch {
        effects,
        records,
        seen,
        outcomes: vec![None; records.deliveries.len()],
        run: Vec::new(),
        run_ids: HashSet::new(),
    };
    for (index, delivery) in records.deliveries.iter().enumerate() {
        batch.take(index, delivery).await?;
    }
    batch.confirm_run().await?;
    Ok(batch.outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Nothing)).collect())
}

/// A refusal of an effect, or the store failure it was.
type Refused = Result<Refusal, StoreError>;

struct Batch<'e, 'r> {
    effects: &'e mut dyn RecordEffects,
    records: Records<'r>,
    /// `eventId`s applied before, and those of this batch so far.
    seen: HashSet<String>,
    outcomes: Vec<Option<Outcome>>,
    /// Pending consecutive confirmations of distinct reservations (indexes into the deliveries).
    run: Vec<usize>,
    /// The reservations of `run`.
    run_ids: HashSet<&'r str>,
}

impl<'r> Batch<'_, 'r> {
    async fn take(&mut self, index: usize, delivery: &'r Delivery) -> Result<(), StoreError> {
        let parsed = match &delivery.parsed {
            Ok(parsed) if self.seen.insert(parsed.event_id.clone()) => parsed,
            Ok(_) => {
                self.outcomes[index] = Some(Outcome::Duplicate);
                return Ok(());
            }
            Err(reason) => {
                self.confirm_run().await?;
                return self.answer(index, Err(Ok(Refusal::new(reason)))).await;
            }
        };
        if let Command::Confirm(request) = &parsed.command {
            // The same reservation twice in one round would race itself: it starts the next run.
            if self.run_ids.contains(request.reservation_id.as_str()) {
                self.confirm_run().await?;
            }
            self.run_ids.insert(request.reservation_id.as_str());
            self.run.push(index);
            return Ok(());
        }
        self.confirm_run().await?;
        let context = EventContext::new(parsed.correlation_id.clone(), self.records.now);
        let result = self.effect(&parsed.command, &context).await;
        if let Command::Nothing = parsed.command {
            self.outcomes[index] = Some(Outcome::Nothing);
            return Ok(());
        }
        self.answer(index, result).await
    }

    fn confirmation(&self, index: usize) -> Option<&'r ConfirmRequest> {
        match &self.records.deliveries[index].parsed {
            Ok(parsed) => match &parsed.command {
                Command::Confirm(request) => Some(request),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// Runs the command's effect: `Err` holds its refusal, or the store failure it met.
    async fn effect(&mut self, command: &Command, context: &EventContext) -> Result<(), Refused> {
        let now = self.records.now;
        match command.intent() {
            Intent::Nothing => Ok(()),
            Intent::Confirm(request) => {
                let confirmation = [Confirmation { request, context: context.clone() }];
                let answers = self.effects.confirm(&confirmation, now).await.map_err(Err)?;
                answers.into_iter().next().unwrap_or(Ok(())).map_err(ConfirmError::refusal)
            }
            Intent::Release { reservation, by, reason } => self
                .effects
                .release(reservation, by, reason, now, context)
                .await
                .map_err(ReleaseError::refusal),
            Intent::CancelOrder { coupon, order } => {
                self.effects.cancel_order(coupon, order, now, context).await.map_err(RestoreError::refusal)
            }
            Intent::Issue { policy, user, channel } => {
                let policy = self.effects.policy(policy).await.map_err(Err)?;
                let policy = policy.ok_or(IssueError::PolicyNotFound).map_err(IssueError::refusal)?;
                let command = IssueCommand::plan(&policy, channel, user, now, self.records.zone, context)
                    .map_err(|reason| Ok(reason.refusal()))?;
                self.effects.issue(command).await.map_err(IssueError::refusal)
            }
        }
    }

    /// Confirms the pending run in one call to the store.
    async fn confirm_run(&mut self) -> Result<(), StoreError> {
        if self.run.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(&mut self.run);
        self.run_ids.clear();
        let now = self.records.now;
        let confirmations: Vec<Confirmation<'r>> = run
            .iter()
            .filter_map(|&index| {
                let parsed = self.records.deliveries[index].parsed.as_ref().ok()?;
                let request = self.confirmation(index)?;
                Some(Confirmation { request, context: EventContext::new(parsed.correlation_id.clone(), now) })
            })
            .collect();
        let answers = self.effects.confirm(&confirmations, now).await?;
        if answers.len() != run.len() {
            return Err(StoreError::Unexpected(anyhow::anyhow!(
                "{} answers for {} confirmations",
                answers.len(),
                run.len()
            )));
        }
        for (index, answer) in run.into_iter().zip(answers) {
            self.answer(index, answer.map_err(ConfirmError::refusal)).await?;
        }
        Ok(())
    }

    /// Records what became of the record at `index`: applied, or refused and dead-lettered.
    async fn answer(&mut self, index: usize, result: Result<(), Refused>) -> Result<(), StoreError> {
        let refusal = match result {
            Ok(()) => {
                self.outcomes[index] = Some(Outcome::Applied);
                return Ok(());
            }
            Err(refused) => refused?,
        };
        let letter = DeadLetter {
            source: self.records.source,
            delivery: &self.records.deliveries[index],
            refusal: &refusal,
            failed_at: self.records.now,
        };
        self.effects.dead_letter(letter).await?;
        self.outcomes[index] = Some(Outcome::DeadLettered(refusal.reason));
        Ok(())
    }
}
