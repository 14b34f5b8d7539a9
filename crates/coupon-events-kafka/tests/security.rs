//! Kafka over TLS and SASL (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_CA`; SPEC §11.7)
//! against a real broker: a Tansu of the test's own behind stunnel (TLS with a certificate for
//! `localhost` that the test makes), with SASL users when the test asks for them. The client and
//! the admin requests this crate sends itself (topics created with their retention) both go
//! through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coupon_domain::clock::Clock;
use coupon_events_kafka::admin::TopicSpec;
use coupon_events_kafka::broker::{Broker, BrokerConfig};
use coupon_events_kafka::security::{KafkaSasl, KafkaSecurity, SaslMechanism};
use coupon_testkit::broker::TlsBroker;
use coupon_testkit::certificates;
use coupon_testkit::process::free_port;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use secrecy::SecretString;

const PASSWORD: &str = "kafka-s3cret-pass";

fn certificates_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coupon-kafka-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    certificates::generate(&dir);
    dir
}

fn config(address: String, ca: &Path, sasl: Option<(SaslMechanism, &str)>) -> BrokerConfig {
    BrokerConfig {
        bootstrap_servers: vec![address],
        request_timeout: Duration::from_secs(3),
        client_id: "security-test".into(),
        security: KafkaSecurity {
            tls: Some(Some(ca.to_path_buf())),
            sasl: sasl.map(|(mechanism, password)| KafkaSasl {
                mechanism,
                username: "coupon".into(),
                password: SecretString::from(password.to_owned()),
            }),
        },
    }
}

/// Creates a topic through the admin connection (with its retention), produces a record through
/// the client and reads it back.
async fn round_trip(broker: &Broker) {
    let topic = format!("secured.{}", free_port());
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 1,
        replication_factor: 1,
        retention: Duration::from_secs(3600),
    };
    assert_eq!(
        broker.ensure_topics(&[spec]).await.expect("topic created over the secured admin connection"),
        std::slice::from_ref(&topic)
    );
    assert_eq!(broker.retention_of(&topic).await.expect("describe configs"), Some(Duration::from_secs(3600)));
    let partition = broker
        .client()
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let record = Record {
        key: Some(b"k".to_vec()),
        value: Some(b"over tls".to_vec()),
        headers: Default::default(),
        timestamp: coupon_domain::clock::SystemClock.now(),
    };
    partition.produce(vec![record], Compression::NoCompression).await.expect("produce");
    let (records, _) = partition.fetch_records(0, 1..1_000_000, 1_000).await.expect("fetch");
    assert_eq!(records.first().and_then(|r| r.record.value.clone()), Some(b"over tls".to_vec()));
}

/// The probe's reason code for `config` (connecting first); `None` when it connects and is ready.
async fn reason(config: &BrokerConfig) -> Option<&'static str> {
    match Broker::connect(config).await {
        Ok(broker) => broker.probe().check().await.err().map(|e| e.reason),
        Err(e) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(PASSWORD), "the password stays out of the error: {text}");
            Some(e.refusal().unwrap_or("UNREACHABLE"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_checks_the_certificate_and_the_host_name() {
    let dir = certificates_dir();
    let broker = TlsBroker::start(&dir, &[]).await;
    let (ca, other_ca) = (dir.join("ca.crt"), dir.join("other-ca.crt"));
    let address = format!("localhost:{}", broker.tls_port());

    let connected = Broker::connect(&config(address.clone(), &ca, None)).await.expect("connects over TLS");
    connected.probe().check().await.expect("ready over TLS");
    round_trip(&connected).await;

    assert_eq!(
        reason(&config(format!("127.0.0.1:{}", broker.tls_port()), &ca, None)).await,
        Some("TLS_HOST_NAME")
    );
    assert_eq!(reason(&config(address, &other_ca, None)).await, Some("TLS_CERTIFICATE"));
    let plain_broker = config(broker.plain_address(), &ca, None);
    assert_ne!(reason(&plain_broker).await, None, "TLS to a plain-text broker does not connect");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_authenticates_with_scram_and_names_a_refused_password() {
    let dir = certificates_dir();
    let broker = TlsBroker::start(&dir, &[("coupon", PASSWORD)]).await;
    let ca = dir.join("ca.crt");
    let address = format!("localhost:{}", broker.tls_port());

    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::ScramSha256] {
        let connected = Broker::connect(&config(address.clone(), &ca, Some((mechanism, PASSWORD))))
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        connected.probe().check().await.expect("ready");
        assert!(!format!("{connected:?}").contains(PASSWORD), "the password stays out of Debug");
        round_trip(&connected).await;
    }
    let wrong = config(address.clone(), &ca, Some((SaslMechanism::ScramSha512, "not-the-password")));
    assert_eq!(reason(&wrong).await, Some("AUTH_FAILED"));
    let without = config(address, &ca, None);
    assert_ne!(reason(&without).await, None, "a broker that requires SASL refuses a client without it");
    std::fs::remove_dir_all(&dir).ok();
}
