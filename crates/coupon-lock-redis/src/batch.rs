//! One round trip for many callers: the concurrent calls of one kind that a thread makes are
//! decided together by one Redis call (a script or a pipeline) instead of one each.
//!
//! A first-come burst spent about 26 µs of CPU per issue on its gate call alone (13.6 µs in the
//! api-server, 12 µs in Redis, measured on a 2-core AMD EPYC), most of it per call rather than per
//! user: encoding, the socket reads and writes on both sides, and Redis looking up the script. So,
//! as group commit does for PostgreSQL, the calls that arrive while a batch is in flight form the
//! next one. A lone call is a batch of one and waits for nothing.
//!
//! Each thread has its own batcher per key, spawned on the caller's runtime (an HTTP worker's own
//! loop), so callers, batcher and the thread's shared Redis connection stay on one thread. Callers
//! only wait for their answer: one that leaves early takes nothing with it, and an answer nobody
//! waits for any more goes to [`Batch::unclaimed`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::pool::RedisError;

/// Most calls decided by one round trip.
const MAX_BATCH: usize = 256;
/// Calls waiting for a batcher before callers wait to enqueue.
const QUEUE: usize = 16 * MAX_BATCH;
/// A batcher stops after this long without calls (and starts again on the next one).
const IDLE: Duration = Duration::from_secs(30);

/// Calls of one kind that one Redis round trip can decide together.
pub(crate) trait Batch: Send + Sync + 'static {
    /// The `call` label of the `redis_batch_size` histogram.
    const NAME: &'static str;
    /// What a batch shares (calls of different keys are never batched together).
    type Key: Copy + Eq + Hash + Send + Sync + 'static;
    type Item: Send + 'static;
    type Answer: Send + 'static;

    /// Decides `items` in order, in one round trip: one answer per item.
    fn run(
        &self,
        key: Self::Key,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, RedisError>> + Send;

    /// `answer` came after its caller left (request dropped): undo what it took, if anything.
    fn unclaimed(
        &self,
        key: Self::Key,
        item: Self::Item,
        answer: Self::Answer,
    ) -> impl Future<Output = ()> + Send;
}

/// What a caller hears: its answer, or the failure of its whole batch.
pub(crate) type Outcome<A> = Result<A, Arc<RedisError>>;

struct Waiting<B: Batch> {
    item: B::Item,
    reply: oneshot::Sender<Outcome<B::Answer>>,
}

type Queues<B> = HashMap<(ThreadId, <B as Batch>::Key), mpsc::Sender<Waiting<B>>>;

/// The batchers of one [`Batch`], one per thread and key.
pub(crate) struct Batcher<B: Batch> {
    batch: Arc<B>,
    queues: Arc<Mutex<Queues<B>>>,
}

impl<B: Batch> Clone for Batcher<B> {
    fn clone(&self) -> Self {
        Self { batch: self.batch.clone(), queues: self.queues.clone() }
    }
}

impl<B: Batch> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<B: Batch> Batcher<B> {
    pub(crate) fn new(batch: Arc<B>) -> Self {
        Self { batch, queues: Arc::default() }
    }

    /// Queues `item` with this thread's other calls of `key` and waits for its answer.
    pub(crate) async fn submit(&self, key: B::Key, item: B::Item) -> Outcome<B::Answer> {
        let (reply, answer) = oneshot::channel();
        let mut waiting = Waiting { item, reply };
        let slot = (std::thread::current().id(), key);
        // A batcher that just stopped for idleness refuses the call; start a new one and retry.
        for _ in 0..2 {
            let queue = self.queue(slot);
            match queue.send(waiting).await {
                Ok(()) => return answer.await.unwrap_or_else(|_| Err(Arc::new(RedisError::Abandoned))),
                Err(mpsc::error::SendError(returned)) => {
                    waiting = returned;
                    self.forget(slot, &queue);
                }
            }
        }
        Err(Arc::new(RedisError::Abandoned))
    }

    fn queue(&self, slot: (ThreadId, B::Key)) -> mpsc::Sender<Waiting<B>> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&slot) {
            return queue.clone();
        }
        // Batchers that stopped for idleness (or with their runtime) leave their queues behind;
        // starting one drops them.
        queues.retain(|_, queue| !queue.is_closed());
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(drive(self.batch.clone(), slot.1, receiver));
        queues.insert(slot, sender.clone());
        sender
    }

    fn forget(&self, slot: (ThreadId, B::Key), stale: &mpsc::Sender<Waiting<B>>) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if queues.get(&slot).is_some_and(|current| current.same_channel(stale)) {
            queues.remove(&slot);
        }
    }
}

/// A batcher: takes what is waiting, decides it in one round trip, answers, repeats.
async fn drive<B: Batch>(batch: Arc<B>, key: B::Key, mut receiver: mpsc::Receiver<Waiting<B>>) {
    let mut waiting: Vec<Waiting<B>> = Vec::with_capacity(MAX_BATCH);
    loop {
        match tokio::time::timeout(IDLE, receiver.recv_many(&mut waiting, MAX_BATCH)).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => {
                // Idle: stop taking calls; answer any that raced in, then leave.
                receiver.close();
                while let Ok(late) = receiver.try_recv() {
                    waiting.push(late);
                }
                if waiting.is_empty() {
                    return;
                }
            }
        }
        // Callers that already left take nothing.
        waiting.retain(|w| !w.reply.is_closed());
        if waiting.is_empty() {
            continue;
        }
        metrics::histogram!("redis_batch_size", "call" => B::NAME).record(waiting.len() as f64);
        let (items, replies): (Vec<_>, Vec<_>) = waiting.drain(..).map(|w| (w.item, w.reply)).unzip();
        match batch.run(key, &items).await {
            Ok(answers) if answers.len() == items.len() => {
                for ((item, reply), answer) in items.into_iter().zip(replies).zip(answers) {
                    if let Err(Ok(answer)) = reply.send(Ok(answer)) {
                        batch.unclaimed(key, item, answer).await;
                    }
                }
            }
            Ok(answers) => {
                let wrong = Arc::new(RedisError::Reply(format!(
                    "{} answers for a batch of {}",
                    answers.len(),
                    items.len()
                )));
                for reply in replies {
                    let _ = reply.send(Err(wrong.clone()));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers each item with its double and records the size of every batch.
    #[derive(Default)]
    struct Doubler {
        sizes: Mutex<Vec<usize>>,
        unclaimed: AtomicUsize,
    }

    impl Batch for Doubler {
        const NAME: &'static str = "test";
        type Key = u8;
        type Item = u32;
        type Answer = u32;

        async fn run(&self, _: u8, items: &[u32]) -> Result<Vec<u32>, RedisError> {
            self.sizes.lock().unwrap_or_else(PoisonError::into_inner).push(items.len());
            tokio::task::yield_now().await;
            Ok(items.iter().map(|n| n * 2).collect())
        }

        async fn unclaimed(&self, _: u8, _: u32, _: u32) {
            self.unclaimed.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn calls_made_together_are_one_batch_and_each_gets_its_own_answer() {
        let doubler = Arc::new(Doubler::default());
        let batcher = Batcher::new(doubler.clone());
        let answers = current_thread().block_on(async {
            let (a, b, c, d, e) = tokio::join!(
                batcher.submit(0, 1),
                batcher.submit(0, 2),
                batcher.submit(0, 3),
                batcher.submit(0, 4),
                batcher.submit(0, 5),
            );
            [a, b, c, d, e].map(Result::ok)
        });
        assert_eq!(answers, [2, 4, 6, 8, 10].map(Some));
        assert_eq!(*doubler.sizes.lock().unwrap_or_else(PoisonError::into_inner), [5]);
    }

    #[test]
    fn a_new_batcher_drops_the_queues_of_those_that_stopped() {
        let batcher = Batcher::new(Arc::new(Doubler::default()));
        let first = current_thread();
        assert_eq!(first.block_on(batcher.submit(1, 1)).ok(), Some(2));
        // The runtime goes, and its batcher with it: the queue of key 1 is closed but still known.
        drop(first);
        assert_eq!(batcher.queues.lock().unwrap_or_else(PoisonError::into_inner).len(), 1);
        assert_eq!(current_thread().block_on(batcher.submit(2, 2)).ok(), Some(4));
        let queues = batcher.queues.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(queues.keys().map(|(_, key)| *key).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn an_answer_whose_caller_left_is_handed_back() {
        let doubler = Arc::new(Doubler::default());
        let batcher = Batcher::new(doubler.clone());
        current_thread().block_on(async {
            {
                let mut leaving = std::pin::pin!(batcher.submit(0, 1));
                // Queue the call and let the batcher take it, then leave before the answer.
                tokio::select! {
                    biased;
                    _ = &mut leaving => panic!("answered before the batcher ran"),
                    () = tokio::task::yield_now() => {}
                }
            }
            // The next call is answered after the batcher dealt with the first one.
            assert_eq!(batcher.submit(0, 2).await.ok(), Some(4));
        });
        assert_eq!(doubler.unclaimed.load(Ordering::SeqCst), 1);
    }
}
