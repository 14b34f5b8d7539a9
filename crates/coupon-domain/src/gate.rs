//! The first-come gate: a fast guard in front of the coupon store, its answers and what a sold-out
//! gate reports. It may admit too many (the store refuses the extra), never too few while stock
//! remains, and it is rebuilt from the store when lost.

use crate::id::{PolicyId, UserId};
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};

/// The first-come gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// Go on to the store (which still decides).
    Admitted,
    /// No stock left: answer `COUPON_SOLD_OUT` without touching the store.
    SoldOut,
    /// The user holds their limit already: answer `COUPON_ALREADY_ISSUED`.
    AlreadyHolding,
}

/// A fast guard in front of the store for FIRST_COME policies, rebuilt from the store when lost.
/// It may admit too many (the store refuses the extra), never too few while stock remains.
pub trait StockGate: Send + Sync + 'static {
    /// Takes one unit of stock for `user`, initialising the gate from `policy` when it is empty.
    fn admit<'a>(
        &'a self,
        policy: &'a Policy,
        user: UserId,
    ) -> PortFuture<'a, Result<GateDecision, StoreError>>;
    /// Returns the unit taken for `user` (the store refused for another reason than stock).
    fn give_back(&self, policy: PolicyId, user: UserId) -> PortFuture<'_, Result<(), StoreError>>;
    /// The store says the stock is gone.
    fn mark_sold_out(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>>;
    /// The policy changed (cap, window): rebuild from the store on next use.
    fn forget(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>>;
    /// When the gate has no stock left: the users who hold `policy`'s per-user limit through it,
    /// and its [`SoldOutMark`], the holders as of that mark. `None` while stock remains or the
    /// gate is empty (or the mark moved during the read).
    fn sold_out_snapshot<'a>(
        &'a self,
        policy: &'a Policy,
    ) -> PortFuture<'a, Result<Option<SoldOutSnapshot>, StoreError>>;
    /// The gate's [`SoldOutMark`] while it has no stock left, else `None`.
    fn sold_out_mark(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<SoldOutMark>, StoreError>>;
    /// The cap the gate counts against and its stock left; `None` when the gate is empty or
    /// unlimited. For the audit that reconciles the gate with the store.
    fn units(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<GateUnits>, StoreError>>;
}

/// What a gate holds: `cap - stock` units were handed out since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateUnits {
    pub cap: u32,
    pub stock: u32,
}

/// What changes whenever a sold-out gate could admit again or change its holders: a returned unit
/// or a raised cap. Equal marks read at two instants mean the holders did not change between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldOutMark(pub String);

/// A sold-out gate: its holders as of its mark.
#[derive(Debug, Clone)]
pub struct SoldOutSnapshot {
    pub mark: SoldOutMark,
    /// Users holding the per-user limit through the gate; every other user is refused for stock.
    pub holders: Vec<UserId>,
}
