//! Consumers of the payment and order topics (SPEC §6), dividing the partitions among the
//! event-worker pods by lease (rskafka has no consumer groups).
//!
//! A supervisor ticks every third of the lease period. It renews the pod's `worker:{id}`
//! heartbeat, counts the live pods, and aims at its fair share of the partitions:
//! ceil(partitions / pods). It keeps renewing the partition leases it holds, takes free or
//! lapsed ones while below its share, and gives extra ones back (stopping their task first).
//! A pod that dies stops renewing, so its partitions are taken over after one lease period
//! plus one tick.
//!
//! A partition's task resumes at the offset stored in PostgreSQL (earliest for a partition never
//! consumed), fetches records, and hands each batch to the `Inbox`, which applies them exactly
//! once together with the new offset. While a batch is applied, the next one is read from the
//! broker; a fetch waits for new records only when the partition was caught up. A batch that fails is tried three times in all, 1 s and then
//! 2 s apart (SPEC §6: 1 s doubling, at most 10 s, three attempts). After that its records are
//! tried one at a time. A record that still fails goes to the DLQ with the error, and the
//! partition moves on: the DLQ record is built to fit whatever the record holds. If the store cannot even record that, the
//! task waits 10 s and tries again: offsets live in PostgreSQL, so nothing can move without it.
//! `Fenced` (the stored offset moved: another pod has the partition) ends the task.
//!
//! Every pod also prunes, once a minute, the dedupe records older than `WORKER_DEDUPE_RETENTION`
//! (SPEC §10); the pods share the rows (`SKIP LOCKED`) rather than wait on each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coupon_domain::clock::Clock;
use coupon_domain::consume::{Delivery, Inbox, InboxError, Outcome, Source};
use coupon_domain::relay::Leases;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, within};
use crate::inbound::Inbound;

/// A consumed topic.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: String,
    pub kind: Inbound,
}

impl Subscription {
    fn source(&self, partition: i32) -> Source {
        Source { topic: self.topic.clone(), partition, dead_letter_topic: format!("{}.DLQ", self.topic) }
    }
}

/// The consumers of one pod.
pub struct Consumers {
    inbox: Arc<dyn Inbox>,
    leases: Arc<dyn Leases>,
    broker: Broker,
    holder: String,
    subscriptions: Vec<Subscription>,
    settings: ConsumerSettings,
    /// The instant a record is applied at: reservation expiry is judged against it.
    clock: Arc<dyn Clock>,
}

/// How the consumers hold partitions and keep dedupe records.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Partition leases last this long unless renewed (`WORKER_LEASE_PERIOD`).
    pub lease: Duration,
    /// How long dedupe records are kept (`WORKER_DEDUPE_RETENTION`).
    pub dedupe_retention: Duration,
}

impl std::fmt::Debug for Consumers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumers")
            .field("holder", &self.holder)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// Largest fetch per request.
pub const FETCH_BYTES: i32 = 1024 * 1024;
/// How long the broker may hold a fetch open when there is nothing new.
pub const FETCH_WAIT_MS: i32 = 500;
/// Most records applied in one transaction.
const MAX_RECORDS: usize = 500;
/// Attempts of a failing batch before its records go one by one.
const ATTEMPTS: u32 = 3;
/// Dedupe records older than the retention are pruned this often, in batches of [`PRUNE_BATCH`],
/// at most [`PRUNE_BATCHES`] each time (a million rows a minute).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: u32 = 10_000;
const PRUNE_BATCHES: u32 = 100;

/// A partition being consumed by this pod.
struct Owned {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Consumers {
    pub fn new(
        inbox: Arc<dyn Inbox>,
        leases: Arc<dyn Leases>,
        broker: Broker,
        holder: String,
        subscriptions: Vec<Subscription>,
        settings: ConsumerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { inbox, leases, broker, holder, subscriptions, settings, clock }
    }

    /// Consumes until `cancel` fires, then stops every partition task and gives the leases up.
    pub async fn run(self, cancel: CancellationToken) {
        let mut owned: HashMap<String, Owned> = HashMap::new();
        let heartbeat = format!("worker:{}", self.holder);
        for subscription in &self.subscriptions {
            // Series that rates and alerts read exist at 0 before the first failure.
            metrics::counter!("coupon_consumer_failures_total", "topic" => subscription.topic.clone())
                .increment(0);
        }
        let mut pruned_at: Option<tokio::time::Instant> = None;
        while !cancel.is_cancelled() {
            if let Err(e) = self.supervise(&heartbeat, &mut owned, &cancel).await {
                tracing::warn!(error = %e, "consumer supervision failed; retrying");
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(tokio::time::Instant::now());
                self.prune_dedupe_records().await;
            }
            metrics::gauge!("coupon_consumer_partitions_owned").set(owned.len() as f64);
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(self.settings.lease / 3) => {}
            }
        }
        for (name, partition) in owned.drain() {
            partition.stop.cancel();
            let _ = partition.task.await;
            let _ = self.leases.release(&name, &self.holder).await;
        }
        let _ = self.leases.release(&heartbeat, &self.holder).await;
    }

    /// Deletes dedupe records older than the retention, in batches, at most [`PRUNE_BATCHES`] of
    /// them per call.
    async fn prune_dedupe_records(&self) {
        let before = self.clock.now()
            - chrono::Duration::from_std(self.settings.dedupe_retention).unwrap_or(chrono::Duration::MAX);
        for _ in 0..PRUNE_BATCHES {
            match self.inbox.prune(before, PRUNE_BATCH).await {
                Ok(n) => {
                    metrics::counter!("coupon_dedupe_pruned_total").increment(n);
                    if n < u64::from(PRUNE_BATCH) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not prune the dedupe records");
                    return;
                }
            }
        }
    }

    /// One tick: heartbeat, fair share, renew, take, give back.
    async fn supervise(
        &self,
        heartbeat: &str,
        owned: &mut HashMap<String, Owned>,
        cancel: &CancellationToken,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.leases.hold(heartbeat, &self.holder, self.settings.lease).await?;
        let pods = self.leases.live("worker:").await?.len().max(1);
        let mut all = Vec::new();
        for (index, subscription) in self.subscriptions.iter().enumerate() {
            let count = self.broker.partitions(&subscription.topic).await?.unwrap_or(0);
            all.extend((0..i32::try_from(count).unwrap_or(0)).map(|p| (index, p)));
        }
        let share = all.len().div_ceil(pods);
        // Finished tasks (fenced, or stopped by an error) free their slot.
        let finished: Vec<String> =
            owned.iter().filter(|(_, o)| o.task.is_finished()).map(|(n, _)| n.clone()).collect();
        for name in finished {
            owned.remove(&name);
            self.leases.release(&name, &self.holder).await?;
        }
        // Renew what this pod has; a lease lost (a stall longer than the period) stops its task.
        let names: Vec<String> = owned.keys().cloned().collect();
        for name in names {
            if !self.leases.hold(&name, &self.holder, self.settings.lease).await?
                && let Some(lost) = owned.remove(&name)
            {
                tracing::warn!(partition = %name, "partition lease lost");
                lost.stop.cancel();
            }
        }
        // Above the fair share (another pod arrived): give partitions back.
        while owned.len() > share {
            let Some(name) = owned.keys().max().cloned() else { break };
            if let Some(extra) = owned.remove(&name) {
                extra.stop.cancel();
                let _ = extra.task.await;
                self.leases.release(&name, &self.holder).await?;
                tracing::info!(partition = %name, "partition handed back");
            }
        }
        // Below it: take free or lapsed partitions.
        for (index, partition) in all {
            if owned.len() >= share {
                break;
            }
            let subscription = &self.subscriptions[index];
            let name = format!("consume:{}:{partition}", subscription.topic);
            if owned.contains_key(&name)
                || !self.leases.hold(&name, &self.holder, self.settings.lease).await?
            {
                continue;
            }
            tracing::info!(partition = %name, "partition taken");
            let stop = cancel.child_token();
            let task = tokio::spawn(consume(
                self.inbox.clone(),
                self.clock.clone(),
                self.broker.clone(),
                subscription.clone(),
                partition,
                stop.clone(),
            ));
            owned.insert(name, Owned { stop, task });
        }
        Ok(())
    }
}

/// Consumes one partition until `stop` fires or another pod turns out to own it.
async fn consume(
    inbox: Arc<dyn Inbox>,
    clock: Arc<dyn Clock>,
    broker: Broker,
    subscription: Subscription,
    partition: i32,
    stop: CancellationToken,
) {
    let source = subscription.source(partition);
    let mut next = None;
    let mut client = None;
    // Records read ahead while the previous batch was being applied.
    let mut ahead: Option<Batch> = None;
    // Whether the last fetch reached the end of the partition: only then is a fetch worth
    // waiting on; behind the end, the broker has records to give at once.
    let mut caught_up = false;
    while !stop.is_cancelled() {
        let step = async {
            let client = match &client {
                Some(client) => client,
                None => client.insert(partition_client(&broker, &subscription.topic, partition).await?),
            };
            let from = match next {
                Some(from) => from,
                None => match inbox.next_offset(&subscription.topic, partition).await {
                    Ok(Some(stored)) => stored,
                    Ok(None) => within(broker.timeout(), client.get_offset(OffsetAt::Earliest)).await?,
                    Err(e) => return Err(Step::Store(e.to_string())),
                },
            };
            next = Some(from);
            // One fetch may return a single record batch (one per produce call): keep fetching,
            // without waiting, until caught up or the batch is full, then apply it all at once.
            let mut batch = ahead.take().filter(|b| b.from == from).unwrap_or_else(|| Batch::new(from));
            while batch.deliveries.len() < MAX_RECORDS && (batch.deliveries.is_empty() || !batch.at_end()) {
                let wait = if batch.deliveries.is_empty() && caught_up { FETCH_WAIT_MS } else { 0 };
                if !batch.fetch(client, &subscription, broker.timeout(), wait).await? || batch.at_end() {
                    break;
                }
            }
            let mut high_watermark = batch.high_watermark;
            if !batch.deliveries.is_empty() {
                // While PostgreSQL applies this batch, the broker reads the next one.
                let read_ahead = async {
                    if batch.at_end() {
                        return None;
                    }
                    let mut next_batch = Batch::new(batch.cursor);
                    // A failed read-ahead is only a lost head start: the next step fetches again.
                    next_batch.fetch(client, &subscription, broker.timeout(), 0).await.ok()?;
                    Some(next_batch)
                };
                let (applied, read) = tokio::join!(
                    apply(&*inbox, &*clock, &source, from, &batch.deliveries, &stop),
                    read_ahead
                );
                applied?;
                next = Some(batch.cursor);
                if let Some(oldest) = batch.oldest {
                    let delay = (clock.now() - oldest).to_std().unwrap_or_default();
                    metrics::histogram!("coupon_consumer_delay_seconds", "topic" => source.topic.clone())
                        .record(delay.as_secs_f64());
                }
                high_watermark = read.as_ref().map_or(high_watermark, |r| r.high_watermark);
                ahead = read;
            }
            let lag = (high_watermark - next.unwrap_or(from)).max(0);
            caught_up = lag == 0;
            metrics::gauge!("coupon_consumer_lag", "topic" => source.topic.clone(), "partition" => partition.to_string())
                .set(lag as f64);
            Ok::<_, Step>(())
        };
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = step => outcome,
        };
        match outcome {
            Ok(()) => {}
            Err(Step::Fenced) => {
                tracing::info!(topic = %source.topic, partition, "another pod owns the partition now");
                return;
            }
            Err(e) => {
                tracing::warn!(topic = %source.topic, partition, error = %e, "consumer step failed; retrying");
                client = None;
                next = None;
                ahead = None;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum Step {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Store(String),
    #[error("fenced")]
    Fenced,
}

/// Records of one partition read from offset `from` up to `cursor` (exclusive).
struct Batch {
    from: i64,
    cursor: i64,
    deliveries: Vec<Delivery>,
    /// Kafka timestamp of the oldest record, for the delay histogram.
    oldest: Option<DateTime<Utc>>,
    /// The partition's end as of the last fetch.
    high_watermark: i64,
}

impl Batch {
    fn new(from: i64) -> Self {
        Self { from, cursor: from, deliveries: Vec::new(), oldest: None, high_watermark: from }
    }

    fn at_end(&self) -> bool {
        self.cursor >= self.high_watermark
    }

    /// One fetch at `cursor`, waiting up to `wait_ms` for records; whether it brought any.
    async fn fetch(
        &mut self,
        client: &PartitionClient,
        subscription: &Subscription,
        timeout: Duration,
        wait_ms: i32,
    ) -> Result<bool, BrokerError> {
        let (records, high_watermark) =
            within(timeout, client.fetch_records(self.cursor, 1..FETCH_BYTES, wait_ms)).await?;
        self.high_watermark = high_watermark;
        // A fetch returns whole record batches, which may start before the cursor.
        let fresh = records.iter().filter(|r| r.offset >= self.cursor);
        self.oldest = self.oldest.or_else(|| fresh.clone().map(|r| r.record.timestamp).min());
        self.deliveries.extend(fresh.map(|r| {
            subscription.kind.delivery(r.offset, r.record.key.as_deref(), r.record.value.as_deref())
        }));
        let before = self.cursor;
        self.cursor = self.deliveries.last().map_or(self.cursor, |d| d.offset + 1);
        Ok(self.cursor != before)
    }
}

async fn partition_client(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<PartitionClient, BrokerError> {
    within(broker.timeout(), broker.client().partition_client(topic, partition, UnknownTopicHandling::Retry))
        .await
}

/// Applies a batch with the retries of the module docs.
async fn apply(
    inbox: &dyn Inbox,
    clock: &dyn Clock,
    source: &Source,
    from: i64,
    deliveries: &[Delivery],
    stop: &CancellationToken,
) -> Result<(), Step> {
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        match inbox.apply(source, from, deliveries, clock.now()).await {
            Ok(outcomes) => {
                record(source, &outcomes);
                return Ok(());
            }
            Err(InboxError::Fenced) => return Err(Step::Fenced),
            Err(InboxError::Store(e)) => {
                metrics::counter!("coupon_consumer_failures_total", "topic" => source.topic.clone())
                    .increment(1);
                tracing::warn!(topic = %source.topic, partition = source.partition, from, attempt, error = %e, "batch failed");
                if attempt < ATTEMPTS {
                    pause(delay, stop).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    // One at a time: the records that work are applied, the one that keeps failing goes to the
    // DLQ with its error, and the partition moves on.
    let mut at = from;
    for delivery in deliveries {
        let one = std::slice::from_ref(delivery);
        let outcome = match inbox.apply(source, at, one, clock.now()).await {
            Ok(outcomes) => Ok(outcomes),
            Err(InboxError::Fenced) => return Err(Step::Fenced),
            Err(InboxError::Store(e)) => {
                let failed = Delivery { parsed: Err(format!("PROCESSING_FAILED: {e}")), ..delivery.clone() };
                inbox.apply(source, at, std::slice::from_ref(&failed), clock.now()).await
            }
        };
        match outcome {
            Ok(outcomes) => record(source, &outcomes),
            Err(InboxError::Fenced) => return Err(Step::Fenced),
            Err(InboxError::Store(e)) => return Err(Step::Store(e.to_string())),
        }
        at = delivery.offset + 1;
    }
    Ok(())
}

fn record(source: &Source, outcomes: &[Outcome]) {
    for outcome in outcomes {
        if let Outcome::DeadLettered(reason) = outcome {
            tracing::warn!(topic = %source.topic, partition = source.partition, reason = %reason, "record sent to the DLQ");
        }
    }
}

async fn pause(delay: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}
