//! Collect callers while the previous batch runs.
//!
//! Work whose cost is mostly per round trip (a Redis script, a PostgreSQL transaction) is cheaper
//! done for many callers at once. A **driver** per key takes whatever is waiting, handles it as one
//! batch, and goes again; the calls that arrive meanwhile queue and form the next batch. A lone
//! call is a batch of one and waits for nothing. Under load a batch is what arrived during the
//! previous one, at most `max_batch`.
//!
//! [`Batches`] keeps one queue per key and starts its driver on the first call (again after the
//! driver stopped for idleness, or with its runtime). Where the driver runs is the caller's
//! choice: [`Batches::per_thread`] keeps one driver per calling thread and key, started on that
//! thread, so callers, driver and the thread's connection share one event loop; this relies on
//! the caller's runtime keeping a task on the thread that spawned it (actix-web's workers do; a
//! work-stealing runtime does not, and would grow a driver per thread it runs on).
//! [`Batches::shared`] keeps one driver per key wherever its start function puts it.
//!
//! [`Call`] pairs an item with its caller's reply channel, for drivers that answer each caller:
//! [`Call::settle`] answers a batch in order, or every caller with the batch's failure, and hands
//! back the answers whose caller left so that their work can be undone.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// How batches form.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most items in one batch.
    pub max_batch: usize,
    /// Items waiting for a driver before callers wait to enqueue.
    pub queue: usize,
    /// A driver stops after this long without items (and starts again on the next one); `None`
    /// keeps it until its runtime stops.
    pub idle: Option<Duration>,
}

/// The items of one key, as its driver takes them.
#[derive(Debug)]
pub struct Intake<T> {
    receiver: mpsc::Receiver<T>,
    settings: Settings,
}

impl<T> Intake<T> {
    /// Waits for the next batch and appends it to `batch` (empty on entry): at least one item, at
    /// most `max_batch`. `false` when the driver should stop: idle with nothing waiting, or no
    /// caller can send any more. When idle, it stops taking items first and still returns any
    /// that raced in, so no caller is left waiting on a driver that is gone.
    pub async fn next(&mut self, batch: &mut Vec<T>) -> bool {
        let max = self.settings.max_batch;
        let Some(idle) = self.settings.idle else {
            return self.receiver.recv_many(batch, max).await > 0;
        };
        match tokio::time::timeout(idle, self.receiver.recv_many(batch, max)).await {
            Ok(taken) => taken > 0,
            Err(_) => {
                self.receiver.close();
                while let Ok(late) = self.receiver.try_recv() {
                    batch.push(late);
                }
                !batch.is_empty()
            }
        }
    }
}

/// Starts the driver of a key with its intake (spawning it where it should run).
type Start<K, T> = dyn Fn(K, Intake<T>) + Send + Sync;

/// The queue of each key, and of the calling thread for [`Batches::per_thread`].
type Queues<K, T> = HashMap<(Option<ThreadId>, K), mpsc::Sender<T>>;

/// The queues of one kind of work, one per key (and per calling thread, for
/// [`Batches::per_thread`]).
pub struct Batches<K, T> {
    queues: Arc<Mutex<Queues<K, T>>>,
    settings: Settings,
    per_thread: bool,
    start: Arc<Start<K, T>>,
}

impl<K, T> Clone for Batches<K, T> {
    fn clone(&self) -> Self {
        Self {
            queues: self.queues.clone(),
            settings: self.settings,
            per_thread: self.per_thread,
            start: self.start.clone(),
        }
    }
}

impl<K, T> std::fmt::Debug for Batches<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("settings", &self.settings)
            .field("per_thread", &self.per_thread)
            .finish_non_exhaustive()
    }
}

impl<K, T> Batches<K, T>
where
    K: Copy + Eq + Hash + Send + 'static,
    T: Send + 'static,
{
    /// One driver per calling thread and key; `start` runs on the calling thread, inside its
    /// runtime (it typically `tokio::spawn`s the driver there).
    pub fn per_thread(settings: Settings, start: impl Fn(K, Intake<T>) + Send + Sync + 'static) -> Self {
        Self { queues: Arc::default(), settings, per_thread: true, start: Arc::new(start) }
    }

    /// One driver per key, started by `start` wherever it spawns it.
    pub fn shared(settings: Settings, start: impl Fn(K, Intake<T>) + Send + Sync + 'static) -> Self {
        Self { queues: Arc::default(), settings, per_thread: false, start: Arc::new(start) }
    }

    /// Queues `item` for the driver of `key`. `Err(item)` when no driver could take it (the
    /// runtime is shutting down).
    pub async fn submit(&self, key: K, item: T) -> Result<(), T> {
        let slot = (self.per_thread.then(|| std::thread::current().id()), key);
        let mut item = item;
        // A driver that just stopped for idleness refuses the item; start a new one and retry.
        for _ in 0..2 {
            let queue = self.queue(slot);
            match queue.send(item).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(returned)) => {
                    item = returned;
                    self.forget(slot, &queue);
                }
            }
        }
        Err(item)
    }

    fn queue(&self, slot: (Option<ThreadId>, K)) -> mpsc::Sender<T> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&slot) {
            return queue.clone();
        }
        // Drivers that stopped (idle, or with their runtime) leave their queues behind; starting
        // one drops them.
        queues.retain(|_, queue| !queue.is_closed());
        let (sender, receiver) = mpsc::channel(self.settings.queue);
        (self.start)(slot.1, Intake { receiver, settings: self.settings });
        queues.insert(slot, sender.clone());
        sender
    }

    fn forget(&self, slot: (Option<ThreadId>, K), stale: &mpsc::Sender<T>) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if queues.get(&slot).is_some_and(|current| current.same_channel(stale)) {
            queues.remove(&slot);
        }
    }

    /// How many queues are known, live or left behind by stopped drivers (tests).
    pub fn queues(&self) -> usize {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// An item with the channel its caller waits on.
#[derive(Debug)]
pub struct Call<I, A> {
    pub item: I,
    reply: oneshot::Sender<A>,
}

impl<I, A> Call<I, A> {
    /// A call, and the receiver its caller awaits.
    pub fn new(item: I) -> (Self, oneshot::Receiver<A>) {
        let (reply, answer) = oneshot::channel();
        (Self { item, reply }, answer)
    }

    /// Whether the caller stopped waiting (its request was dropped).
    pub fn gone(&self) -> bool {
        self.reply.is_closed()
    }

    /// Answers the caller. `Err` gives the answer back when the caller has gone.
    pub fn answer(self, answer: A) -> Result<(), (I, A)> {
        self.reply.send(answer).map_err(|answer| (self.item, answer))
    }
}

impl<I, A, E: Clone> Call<I, Result<A, E>> {
    /// Answers a batch: each call its own answer, in order, or every call the batch's failure
    /// (also when the answers do not match the calls one to one, `miscount(answers, calls)`).
    /// Returns the answers whose caller had gone, with their items, to be undone.
    pub fn settle(
        calls: Vec<Self>,
        answers: Result<Vec<A>, E>,
        miscount: impl FnOnce(usize, usize) -> E,
    ) -> Vec<(I, A)> {
        let failure = match answers {
            Ok(answers) if answers.len() == calls.len() => {
                return calls
                    .into_iter()
                    .zip(answers)
                    .filter_map(|(call, answer)| match call.answer(Ok(answer)) {
                        Ok(()) => None,
                        Err((item, Ok(answer))) => Some((item, answer)),
                        Err((_, Err(_))) => None,
                    })
                    .collect();
            }
            Ok(answers) => miscount(answers.len(), calls.len()),
            Err(e) => e,
        };
        for call in calls {
            let _ = call.answer(Err(failure.clone()));
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
