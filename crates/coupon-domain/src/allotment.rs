//! First come, first served within one batch (SPEC §4.2): when the requests of one policy are
//! decided together, which of them get the stock the counter granted, and what each is answered.

use std::collections::{HashMap, HashSet};

use crate::id::UserId;

/// What a request of a batch is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The coupon written for the request is the user's.
    Issued,
    /// `COUPON_SOLD_OUT`: the stock ran out before the request's turn.
    SoldOut,
    /// `COUPON_ALREADY_ISSUED`: the user held the coupon before the batch, or got it from an
    /// earlier request of the batch.
    AlreadyIssued,
}

/// One batch of a policy's requests whose per-user limit is one, decided together.
#[derive(Debug, Clone)]
pub struct Allotment {
    users: Vec<UserId>,
    /// Each newly covered user's first request, in arrival order.
    contenders: Vec<usize>,
}

impl Allotment {
    /// `users` in arrival order; `fresh(user)`: a new coupon could be written for the user (they
    /// held none before the batch). Arrival, not the order the store wrote in, decides who gets
    /// the stock when there is not enough for all.
    pub fn new(users: Vec<UserId>, fresh: impl Fn(UserId) -> bool) -> Self {
        let mut seen = HashSet::with_capacity(users.len());
        let contenders = users
            .iter()
            .enumerate()
            .filter(|(_, user)| fresh(**user) && seen.insert(**user))
            .map(|(i, _)| i)
            .collect();
        Self { users, contenders }
    }

    /// The requests that ask the counter for stock, in arrival order (indexes into the batch).
    pub fn contenders(&self) -> &[usize] {
        &self.contenders
    }

    /// The contenders beyond the `granted` stock: their coupons must be taken back.
    pub fn past_stock(&self, granted: usize) -> &[usize] {
        &self.contenders[granted.min(self.contenders.len())..]
    }

    /// Each request's answer, in batch order, once the counter granted `granted` units.
    pub fn shares(&self, granted: usize) -> Vec<Share> {
        let granted = granted.min(self.contenders.len());
        let mut share: HashMap<UserId, (usize, Share)> = HashMap::with_capacity(self.contenders.len());
        for (rank, &i) in self.contenders.iter().enumerate() {
            let won = if rank < granted { Share::Issued } else { Share::SoldOut };
            share.insert(self.users[i], (i, won));
        }
        self.users
            .iter()
            .enumerate()
            .map(|(i, user)| match share.get(user) {
                Some(&(first, won)) if first == i => won,
                Some(&(_, Share::SoldOut)) => Share::SoldOut,
                _ => Share::AlreadyIssued,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[i64]) -> Vec<UserId> {
        ids.iter().map(|&id| UserId::new(id).expect("user")).collect()
    }

    #[test]
    fn the_stock_goes_in_arrival_order_and_a_user_wins_once() {
        // User 9 held the coupon before the batch; user 3 asks twice.
        let allotment = Allotment::new(users(&[5, 3, 9, 3, 1, 2]), |u| u.get() != 9);
        assert_eq!(allotment.contenders(), &[0, 1, 4, 5]);
        assert_eq!(allotment.past_stock(2), &[4, 5]);
        use Share::{AlreadyIssued, Issued, SoldOut};
        assert_eq!(allotment.shares(2), vec![Issued, Issued, AlreadyIssued, AlreadyIssued, SoldOut, SoldOut]);
    }

    #[test]
    fn a_repeated_request_of_a_user_past_the_stock_is_sold_out_too() {
        let allotment = Allotment::new(users(&[1, 2, 2]), |_| true);
        assert_eq!(allotment.shares(1), vec![Share::Issued, Share::SoldOut, Share::SoldOut]);
        assert_eq!(allotment.shares(10), vec![Share::Issued, Share::Issued, Share::AlreadyIssued]);
        assert!(allotment.past_stock(10).is_empty());
    }
}
