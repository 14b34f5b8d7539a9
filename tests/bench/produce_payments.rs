//! `just bench events` helper: produces the payment.completed events of reservations
//! `S1..=S{n}` (coupon of user k has id `first + k - 1`) on the payment topic, 500 records per
//! produce call, and prints how long that took. Reads the usual `KAFKA_*` variables.
//!
//! Usage: produce-payments FIRST_COUPON N

use coupon_domain::clock::{Clock, SystemClock};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coupon_events_kafka::broker::Broker;
use coupon_events_kafka::relay::default_partition;
use coupon_runtime::settings::Settings;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, first, n] = args.as_slice() else { anyhow::bail!("usage: produce-payments FIRST_COUPON N") };
    let (first, n): (i64, i64) = (first.parse()?, n.parse()?);
    let settings = Settings::from_env(std::env::vars().collect::<std::collections::HashMap<_, _>>())?;
    let topic = settings.kafka.topics.payment_completed.clone();
    let mut config = coupon_wiring::broker_config(&settings, "bench-producer")?;
    config.request_timeout = Duration::from_secs(30);
    let broker = Broker::connect(&config).await?;
    let partitions = i32::try_from(broker.partitions(&topic).await?.unwrap_or(1))?;
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for k in 1..=n {
        let coupon = first + k - 1;
        let value = serde_json::json!({
            "eventId": format!("bench-pay-{k}"), "eventType": "PAYMENT_COMPLETED", "timestamp": "2026-11-23T10:05:00Z",
            "data": {"paymentId": format!("PAY-{k}"), "orderId": format!("O-S{k}"), "userId": k, "amount": 49_000,
                     "couponId": coupon, "reservationId": format!("S{k}"), "paymentMethod": "CREDIT_CARD"},
            "metadata": {"correlationId": format!("bench-{k}"), "source": "payment-service", "version": "1.0"}
        });
        let key = coupon.to_string();
        by_partition.entry(default_partition(key.as_bytes(), partitions)).or_default().push(Record {
            key: Some(key.into_bytes()),
            value: Some(value.to_string().into_bytes()),
            headers: BTreeMap::new(),
            timestamp: SystemClock.now(),
        });
    }
    let started = Instant::now();
    for (partition, records) in by_partition {
        let client =
            broker.client().partition_client(topic.as_str(), partition, UnknownTopicHandling::Retry).await?;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Record> = records.by_ref().take(500).collect();
            client.produce(chunk, Compression::NoCompression).await?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    #[expect(clippy::print_stdout, reason = "the figure is this tool's output")]
    {
        println!("produced {n} payment.completed on {topic} in {seconds:.2}s");
    }
    Ok(())
}
