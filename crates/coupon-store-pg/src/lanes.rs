//! Lanes: a fixed number of batch queues ([`coupon_batch`]), each drained by one task that takes
//! whatever is waiting and handles it as one batch. Requests with the same key go to the same
//! lane, in order. The checkout's reserves and confirmations and the claims of fresh idempotency
//! keys run in lanes.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use coupon_batch::{Batches, Settings};

use crate::own_thread::OwnThread;

/// Most requests in one batch.
pub(crate) const MAX_BATCH: usize = 256;
/// A lane runs as long as its runtime; requests wait to enqueue beyond four batches.
const SETTINGS: Settings = Settings { max_batch: MAX_BATCH, queue: 4 * MAX_BATCH, idle: None };

/// The lanes of one kind of request, each started on first use: on its own thread's runtime when
/// given one, else on the runtime of the caller that started it.
pub(crate) struct Lanes<J> {
    count: usize,
    batches: Batches<usize, J>,
}

impl<J: Send + 'static> Lanes<J> {
    /// `count` lanes, run on `thread` if given; each batch is handed to `handle`, which answers
    /// every job in it.
    pub(crate) fn new<H, F>(thread: Option<Arc<OwnThread>>, count: usize, handle: H) -> Self
    where
        H: Fn(Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let start = move |_lane, mut intake: coupon_batch::Intake<J>| {
            let handle = handle.clone();
            let held = thread.clone();
            let lane = async move {
                // A lane holds its thread while it runs.
                let _held = held;
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while intake.next(&mut batch).await {
                    handle(std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH))).await;
                }
            };
            match &thread {
                Some(thread) => thread.runtime().spawn(lane),
                None => tokio::spawn(lane),
            };
        };
        Self { count: count.max(1), batches: Batches::shared(SETTINGS, start) }
    }

    /// Queues `job` on the lane of `key`. `Err(job)` if no lane can take it (the runtime is
    /// shutting down).
    pub(crate) async fn submit(&self, key: impl Hash, job: J) -> Result<(), J> {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        let lane = usize::try_from(hasher.finish() % self.count as u64).unwrap_or(0);
        self.batches.submit(lane, job).await
    }
}
