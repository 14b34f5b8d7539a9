//! `just publish TOPIC KEY`: produces one record, its value read from standard input, to a topic
//! of the broker named by the usual `KAFKA_*` variables, on the partition the relay would pick for
//! the key. The README walkthrough sends a `payment.completed` with it, as the payment service would.

use std::io::Read;

use anyhow::Context;
use coupon_domain::clock::{Clock, SystemClock};
use coupon_events_kafka::broker::Broker;
use coupon_events_kafka::relay::default_partition;
use coupon_runtime::settings::Settings;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, topic, key] = args.as_slice() else { anyhow::bail!("usage: publish TOPIC KEY < value") };
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).context("reading the value from standard input")?;
    let settings = Settings::from_env(std::env::vars().collect::<std::collections::HashMap<_, _>>())?;
    let broker = Broker::connect(&coupon_wiring::broker_config(&settings, "coupon-publish")?).await?;
    let partitions = broker.partitions(topic).await?.with_context(|| format!("no topic {topic}"))?;
    let partition = default_partition(key.as_bytes(), i32::try_from(partitions)?);
    let client =
        broker.client().partition_client(topic.as_str(), partition, UnknownTopicHandling::Error).await?;
    let record = Record {
        key: Some(key.clone().into_bytes()),
        value: Some(value.trim().as_bytes().to_vec()),
        headers: Default::default(),
        timestamp: SystemClock.now(),
    };
    let offsets = client.produce(vec![record], Compression::NoCompression).await?;
    let offset = offsets.first().copied().unwrap_or(-1);
    #[expect(clippy::print_stdout, reason = "where the record went is this tool's output")]
    {
        println!("published to {topic} partition {partition} at offset {offset}");
    }
    Ok(())
}
