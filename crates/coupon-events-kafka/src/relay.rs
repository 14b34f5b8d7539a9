//! The outbox relay (SPEC §3.2): publishes outbox rows to Kafka, at least once, in order per key.
//!
//! One pod relays at a time: the one holding the `outbox-relay` lease, renewed on every round.
//! A round reads the oldest unpublished rows, sends each partition's rows in outbox order as one
//! produce request (the partition of a key is Kafka's default: murmur2 of the key), marks what
//! the broker acknowledged, and goes again at once while rows keep coming. A partition whose
//! produce failed keeps its rows; they are the oldest unpublished rows of that partition, so the
//! next round sends them again before anything newer of the same key. While the broker is down,
//! rows wait in PostgreSQL and the relay backs off (1 s doubling to 10 s). A produce that failed
//! may still have been appended (the answer was lost, or came after the timeout): before sending
//! that partition's rows again, the relay reads the partition's tail and marks the rows it finds
//! there instead of producing them twice. If a pod dies between produce and mark, its rows are
//! published again by the next holder (at least once; consumers dedupe by `eventId`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_domain::clock::Clock;
use coupon_domain::relay::{Leases, Outbox, OutboxRecord};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError, within};

/// Name of the lease whose holder relays.
pub const RELAY_LEASE: &str = "outbox-relay";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows read per round.
    pub batch: u32,
    /// Pause after a round that found nothing.
    pub idle_poll: Duration,
    /// Published rows older than this are deleted.
    pub retention: Duration,
    /// Lease period; a dead relay's lease lapses after this.
    pub lease: Duration,
}

/// Publishes the outbox.
pub struct Relay {
    outbox: Arc<dyn Outbox>,
    leases: Arc<dyn Leases>,
    broker: Broker,
    holder: String,
    settings: RelaySettings,
    /// Stamps publications and judges the backlog's age and the retention.
    clock: Arc<dyn Clock>,
    /// Each topic's partition clients, by partition number.
    partitions: HashMap<String, Vec<Arc<PartitionClient>>>,
    /// Partitions whose last produce failed: the broker may have appended it all the same.
    uncertain: HashSet<(String, i32)>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Store(#[from] coupon_domain::port::StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Relay {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        leases: Arc<dyn Leases>,
        broker: Broker,
        holder: String,
        settings: RelaySettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            outbox,
            leases,
            broker,
            holder,
            settings,
            clock,
            partitions: HashMap::new(),
            uncertain: HashSet::new(),
        }
    }

    /// Relays until `cancel` fires, then gives the lease up.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new();
        let mut maintained_at: Option<Instant> = None;
        while !cancel.is_cancelled() {
            let round = self.round().await;
            let leader = !matches!(round, Ok(Round::NotLeader));
            if leader && maintained_at.is_none_or(|at| at.elapsed() >= MAINTAIN_EVERY) {
                maintained_at = Some(Instant::now());
                self.maintain().await;
            }
            let pause = match round {
                Ok(Round::NotLeader) => self.settings.lease / 3,
                Ok(Round::Idle) => {
                    backoff.reset();
                    self.settings.idle_poll
                }
                Ok(Round::Published) => {
                    backoff.reset();
                    Duration::ZERO
                }
                Err(e) => {
                    let pause = backoff.next();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "outbox relay round failed");
                    pause
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        if let Err(e) = self.leases.release(RELAY_LEASE, &self.holder).await {
            tracing::warn!(error = %e, "could not give the relay lease up; it lapses by itself");
        }
    }

    async fn round(&mut self) -> Result<Round, RoundError> {
        if !self.leases.hold(RELAY_LEASE, &self.holder, self.settings.lease).await? {
            return Ok(Round::NotLeader);
        }
        let rows = self.outbox.pending(self.settings.batch).await?;
        if rows.is_empty() {
            return Ok(Round::Idle);
        }
        let started = Instant::now();
        let mut by_partition: BTreeMap<(String, i32), (Arc<PartitionClient>, Vec<OutboxRecord>)> =
            BTreeMap::new();
        for row in rows {
            let (partition, client) = self.partition_of(&row).await?;
            by_partition
                .entry((row.topic.clone(), partition))
                .or_insert_with(|| (client, Vec::new()))
                .1
                .push(row);
        }
        let timeout = self.broker.timeout();
        let mut published = Vec::new();
        let mut failure = None;
        // A partition whose last produce failed is read back first; while that cannot be done,
        // its rows wait (sending them blind could append them twice).
        let checks =
            by_partition.iter().filter(|(key, _)| self.uncertain.contains(key)).map(
                |(key, (client, rows))| async move {
                    (key.clone(), within(timeout, appended(client, rows)).await)
                },
            );
        for ((topic, partition), checked) in futures::future::join_all(checks).await {
            let Some((_, rows)) = by_partition.get_mut(&(topic.clone(), partition)) else { continue };
            match checked {
                Ok(found) => {
                    self.uncertain.remove(&(topic.clone(), partition));
                    if found > 0 {
                        tracing::info!(topic = %topic, partition, rows = found,
                            "rows of a failed produce were appended after all; marked, not sent again");
                        published.extend(rows.drain(..found).map(|row| row.id));
                    }
                }
                Err(e) => {
                    rows.clear();
                    failure = Some(e);
                }
            }
        }
        let sends = by_partition.into_iter().filter(|(_, (_, rows))| !rows.is_empty()).map(
            |((topic, partition), (client, rows))| async move {
                let records = rows.iter().map(record).collect();
                let sent = within(timeout, client.produce(records, Compression::NoCompression)).await;
                (topic, partition, rows, sent)
            },
        );
        for outcome in futures::future::join_all(sends).await {
            let (topic, partition, rows, sent) = outcome;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            match sent {
                Ok(_) => {
                    metrics::counter!("coupon_outbox_published_total", "topic" => topic.clone())
                        .increment(ids.len() as u64);
                    // The failure series exists from the first success, so rates and alerts see 0.
                    metrics::counter!("coupon_outbox_publish_failures_total", "topic" => topic).increment(0);
                    published.extend(ids);
                }
                Err(e) => {
                    metrics::counter!("coupon_outbox_publish_failures_total", "topic" => topic.clone())
                        .increment(1);
                    self.uncertain.insert((topic, partition));
                    self.outbox.mark_failed(&ids, &e.to_string()).await?;
                    failure = Some(e);
                }
            }
        }
        if !published.is_empty() {
            self.outbox.mark_published(&published, self.clock.now()).await?;
        }
        metrics::histogram!("coupon_outbox_publish_seconds").record(started.elapsed().as_secs_f64());
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(Round::Published),
        }
    }

    /// Kafka's default partition of the row's key, and its client. A topic's partition count
    /// and clients are looked up once (a topic that gains partitions needs a restart).
    async fn partition_of(&mut self, row: &OutboxRecord) -> Result<(i32, Arc<PartitionClient>), BrokerError> {
        let clients = match self.partitions.get(&row.topic) {
            Some(clients) => clients,
            None => {
                let count = self.broker.partitions(&row.topic).await?.unwrap_or(1).max(1);
                let mut clients = Vec::with_capacity(count);
                for partition in 0..i32::try_from(count).unwrap_or(i32::MAX) {
                    let client = self.broker.client().partition_client(
                        row.topic.as_str(),
                        partition,
                        UnknownTopicHandling::Error,
                    );
                    clients.push(Arc::new(within(self.broker.timeout(), client).await?));
                }
                self.partitions.entry(row.topic.clone()).or_insert(clients)
            }
        };
        let count = i32::try_from(clients.len()).unwrap_or(i32::MAX);
        let partition = default_partition(row.key.as_bytes(), count);
        let client = clients
            .get(usize::try_from(partition).unwrap_or(0))
            .cloned()
            .unwrap_or_else(|| clients[0].clone());
        Ok((partition, client))
    }

    /// Backlog gauges, and pruning of published rows.
    async fn maintain(&self) {
        match self.outbox.backlog().await {
            Ok(backlog) => {
                let age = backlog.oldest.map_or(0.0, |at| (self.clock.now() - at).as_seconds_f64().max(0.0));
                metrics::gauge!("coupon_outbox_unpublished_rows").set(backlog.rows as f64);
                metrics::gauge!("coupon_outbox_oldest_unpublished_age_seconds").set(age);
            }
            Err(e) => tracing::warn!(error = %e, "could not measure the outbox backlog"),
        }
        let before =
            self.clock.now() - chrono::Duration::from_std(self.settings.retention).unwrap_or_default();
        match self.outbox.prune(before, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("coupon_outbox_pruned_total").increment(n);
                tracing::debug!(rows = n, "pruned published outbox rows");
            }
            Err(e) => tracing::warn!(error = %e, "could not prune the outbox"),
        }
    }
}

/// The relay measures the backlog and prunes published rows (at most [`PRUNE_BATCH`]) this often.
const MAINTAIN_EVERY: Duration = Duration::from_secs(5);
const PRUNE_BATCH: u32 = 10_000;

enum Round {
    NotLeader,
    Idle,
    Published,
}

/// Most bytes one fetch of a partition's tail asks for.
const TAIL_FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// How many of `rows`, from the first, are already the partition's last records: a failed
/// produce sends a partition's oldest unpublished rows in order, and the broker appends a produce
/// whole or not at all. Compared by payload (each names its own `eventId`).
async fn appended(
    client: &PartitionClient,
    rows: &[OutboxRecord],
) -> Result<usize, rskafka::client::error::Error> {
    let end = client.get_offset(OffsetAt::Latest).await?;
    let mut offset = end.saturating_sub(i64::try_from(rows.len()).unwrap_or(i64::MAX)).max(0);
    let mut tail = HashSet::new();
    while offset < end {
        let (records, _) = client.fetch_records(offset, 1..TAIL_FETCH_BYTES, 0).await?;
        let Some(last) = records.last().map(|r| r.offset) else { break };
        offset = last + 1;
        tail.extend(records.into_iter().filter_map(|r| r.record.value));
    }
    Ok(rows.iter().take_while(|row| tail.contains(row.payload.as_bytes())).count())
}

fn record(row: &OutboxRecord) -> Record {
    Record {
        key: Some(row.key.as_bytes().to_vec()),
        value: Some(row.payload.as_bytes().to_vec()),
        headers: BTreeMap::new(),
        timestamp: row.created_at,
    }
}

/// 1 s, doubling, at most 10 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }
}

/// The partition the Java client's default partitioner picks for a keyed record:
/// `toPositive(murmur2(key)) % partitions`, so that other Kafka clients agree on where a
/// coupon's events are.
pub fn default_partition(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    i32::try_from(positive % partitions.max(1).unsigned_abs()).unwrap_or(0)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Apache Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 7] = [
            (b"1", -1_993_445_489),
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key).cast_signed(), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn one_key_always_lands_on_one_partition_in_range() {
        for key in ["1", "1001", "987654321"] {
            let p = default_partition(key.as_bytes(), 3);
            assert!((0..3).contains(&p));
            assert_eq!(p, default_partition(key.as_bytes(), 3));
        }
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let mut b = Backoff::new();
        let seen: Vec<u64> = (0..6).map(|_| b.next().as_secs()).collect();
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next(), Duration::from_secs(1));
    }
}
