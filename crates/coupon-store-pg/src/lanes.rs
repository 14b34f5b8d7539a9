//! Lanes: a fixed number of queues, each drained by one task that takes whatever is waiting and
//! handles it as one batch. Under load a batch is what arrived while the previous one ran; a lone
//! request is a batch of one and waits for nothing. Requests with the same key go to the same lane,
//! in order.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

/// Most requests in one batch.
pub(crate) const MAX_BATCH: usize = 256;
/// Requests waiting per lane before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// The lanes of one kind of request, started on first use (inside the runtime).
pub(crate) struct Lanes<J> {
    count: usize,
    senders: OnceLock<Vec<mpsc::Sender<J>>>,
    start: Box<dyn Fn() -> Vec<mpsc::Sender<J>> + Send + Sync>,
}

impl<J: Send + 'static> Lanes<J> {
    /// `count` lanes; each batch is handed to `handle`, which answers every job in it.
    pub(crate) fn new<H, F>(count: usize, handle: H) -> Self
    where
        H: Fn(Vec<J>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let start = move || {
            (0..count)
                .map(|_| {
                    let (sender, mut receiver) = mpsc::channel::<J>(QUEUE);
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        loop {
                            let mut batch = Vec::with_capacity(MAX_BATCH);
                            if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                                return;
                            }
                            handle(batch).await;
                        }
                    });
                    sender
                })
                .collect()
        };
        Self { count, senders: OnceLock::new(), start: Box::new(start) }
    }

    /// Queues `job` on the lane of `key`. `Err(job)` if the lane is gone (the runtime is
    /// shutting down).
    pub(crate) async fn submit(&self, key: impl Hash, job: J) -> Result<(), J> {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        let lane = usize::try_from(hasher.finish() % self.count.max(1) as u64).unwrap_or(0);
        let senders = self.senders.get_or_init(|| (self.start)());
        match senders.get(lane) {
            Some(sender) => sender.send(job).await.map_err(|e| e.0),
            None => Err(job),
        }
    }
}
