//! `just bench events` helper: what the broker can deliver to a consumer that applies nothing.
//! Reads the payment topic from offset 0 to its end, every partition at once with the
//! event-worker's fetch size, and prints the records and the time from connecting to the last
//! fetch. The bench divides the event-worker's rate by this one. Reads the usual `KAFKA_*`
//! variables.
//!
//! Usage: drain-payments

use std::time::{Duration, Instant};

use coupon_events_kafka::broker::Broker;
use coupon_events_kafka::consumer::{FETCH_BYTES, FETCH_WAIT_MS};
use coupon_runtime::settings::Settings;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env(std::env::vars().collect::<std::collections::HashMap<_, _>>())?;
    let topic = settings.kafka.topics.payment_completed.clone();
    let mut config = coupon_wiring::broker_config(&settings, "bench-drain")?;
    config.request_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let broker = Broker::connect(&config).await?;
    let partitions = i32::try_from(broker.partitions(&topic).await?.unwrap_or(1))?;
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..partitions {
        let client =
            broker.client().partition_client(topic.as_str(), partition, UnknownTopicHandling::Retry).await?;
        tasks.spawn(async move {
            let end = client.get_offset(OffsetAt::Latest).await?;
            let (mut cursor, mut records) = (0_i64, 0_u64);
            while cursor < end {
                let (fetched, _) = client.fetch_records(cursor, 1..FETCH_BYTES, FETCH_WAIT_MS).await?;
                // A fetch returns whole record batches, which may start before the cursor.
                let from = cursor;
                for record in fetched.iter().filter(|r| r.offset >= from) {
                    records += 1;
                    cursor = record.offset + 1;
                }
            }
            anyhow::Ok(records)
        });
    }
    let mut records = 0;
    while let Some(drained) = tasks.join_next().await {
        records += drained??;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[expect(clippy::print_stdout, reason = "the figure is this tool's output")]
    {
        println!("drained {records} records of {topic} in {seconds:.3} s");
    }
    Ok(())
}
