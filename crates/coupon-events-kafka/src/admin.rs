//! Topics created with their retention (SPEC §10: `coupon.*` 7 days, DLQs 30 days, both settable).
//!
//! rskafka 0.6 creates topics without configuration (its CreateTopics request carries no
//! `configs`) and has no request to change a topic's configuration, so this module sends those
//! two admin requests itself, encoded by the `kafka-protocol` crate: Metadata (v1) to find the
//! controller, CreateTopics (v2) with `retention.ms` to it, and DescribeConfigs (v1) to read a
//! topic's retention back. One short-lived connection per call, secured like the client's (TLS,
//! then SaslHandshake and SaslAuthenticate when SASL is configured), under the request timeout;
//! only at start-up and in tests.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::BrokerError;
use crate::security::{self, Secured, Stream};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// `retention.ms`.
    pub retention: Duration,
}

/// Kafka's error code for a topic that exists already.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// DescribeConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// Creates `topics` with their retention through the controller; a topic that exists already is
/// left as it is. Returns the names created.
///
/// # Errors
/// No bootstrap broker answers within `timeout`, or the controller refuses a topic.
pub(crate) async fn create_topics(
    bootstrap: &[String],
    secured: &Secured,
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<String>, BrokerError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let controller = tokio::time::timeout(timeout, controller(bootstrap, secured))
        .await
        .map_err(|_| BrokerError::Timeout(timeout))??;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication_factor)
                        .with_configs(vec![
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_value(Some(StrBytes::from_string(t.retention.as_millis().to_string()))),
                        ])
                })
                .collect(),
        );
    let response: CreateTopicsResponse =
        tokio::time::timeout(timeout, call(&controller, secured, ApiKey::CreateTopics, 2, &request))
            .await
            .map_err(|_| BrokerError::Timeout(timeout))??;
    let mut created = Vec::new();
    for result in response.topics {
        match result.error_code {
            0 => created.push(result.name.0.to_string()),
            TOPIC_ALREADY_EXISTS => {}
            code => {
                let message = result.error_message.map(|m| m.to_string()).unwrap_or_default();
                return Err(BrokerError::Admin(format!(
                    "creating topic {} failed with error {code} {message}",
                    result.name.0.as_str()
                )));
            }
        }
    }
    Ok(created)
}

/// The `retention.ms` of `topic`, as the broker reports it (`None` when it reports none).
///
/// # Errors
/// No broker answers within `timeout`, or the broker refuses the request.
pub(crate) async fn retention_of(
    bootstrap: &[String],
    secured: &Secured,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Duration>, BrokerError> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            // Every key, filtered below: the local broker (Tansu 0.6) cannot decode a list of
            // keys and drops the connection.
            .with_configuration_keys(None),
    ]);
    let work = async {
        let address = controller(bootstrap, secured).await?;
        call::<_, DescribeConfigsResponse>(&address, secured, ApiKey::DescribeConfigs, 1, &request).await
    };
    let response = tokio::time::timeout(timeout, work).await.map_err(|_| BrokerError::Timeout(timeout))??;
    let value = response
        .results
        .iter()
        .flat_map(|r| &r.configs)
        .find(|c| c.name.as_str() == "retention.ms")
        .and_then(|c| c.value.as_ref())
        .and_then(|v| v.as_str().parse::<u64>().ok());
    Ok(value.map(Duration::from_millis))
}

/// Why the brokers refuse a secured connection (TLS or SASL), found by one Metadata request of
/// our own; `None` when they accept it, or fail for another reason.
pub(crate) async fn refusal(bootstrap: &[String], secured: &Secured, timeout: Duration) -> Option<String> {
    match tokio::time::timeout(timeout, controller(bootstrap, secured)).await {
        Ok(Err(e)) if e.refusal().is_some() => Some(e.to_string()),
        _ => None,
    }
}

/// The controller's `host:port`, from the first bootstrap broker that answers Metadata.
async fn controller(bootstrap: &[String], secured: &Secured) -> Result<String, BrokerError> {
    let mut last = BrokerError::Admin("no bootstrap broker".into());
    for address in bootstrap {
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        match call::<_, MetadataResponse>(address, secured, ApiKey::Metadata, 1, &request).await {
            Ok(metadata) => {
                let controller = metadata.controller_id;
                return metadata
                    .brokers
                    .iter()
                    .find(|b| b.node_id == controller)
                    .map(|b| format!("{}:{}", b.host.as_str(), b.port))
                    .ok_or_else(|| {
                        BrokerError::Admin(format!("controller {} is not among the brokers", controller.0))
                    });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One request and its response over a fresh connection to `address`, secured and authenticated
/// as `secured` says.
async fn call<Q: Encodable + HeaderVersion, R: Decodable + HeaderVersion>(
    address: &str,
    secured: &Secured,
    key: ApiKey,
    version: i16,
    request: &Q,
) -> Result<R, BrokerError> {
    let failed = |e: String| BrokerError::Admin(format!("{key:?} to {address}: {e}"));
    let stream = secured.connect(address).await.map_err(failed)?;
    let mut connection = Connection { stream, correlation: 0 };
    if let Some(sasl) = secured.sasl() {
        let mechanism = StrBytes::from_static_str(sasl.mechanism.name());
        let handshake = SaslHandshakeRequest::default().with_mechanism(mechanism);
        let offered: SaslHandshakeResponse =
            connection.request(ApiKey::SaslHandshake, 1, &handshake).await.map_err(failed)?;
        if offered.error_code != 0 {
            let offered: Vec<&str> = offered.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(failed(format!(
                "SASL mechanism {} not offered (offered: {offered:?})",
                sasl.mechanism.name()
            )));
        }
        let mut exchange = security::Exchange::start(sasl).map_err(failed)?;
        let mut received: Option<Vec<u8>> = None;
        loop {
            // A step fails when the broker's answer refuses us (SCRAM's `e=invalid-proof`) or
            // does not verify.
            let (ours, finished) = exchange
                .step(received.as_deref())
                .map_err(|e| failed(format!("SASL authentication failed: {e}")))?;
            if let Some(ours) = ours {
                let step = SaslAuthenticateRequest::default().with_auth_bytes(ours.into());
                let answer: SaslAuthenticateResponse =
                    connection.request(ApiKey::SaslAuthenticate, 1, &step).await.map_err(failed)?;
                if answer.error_code != 0 {
                    let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
                    return Err(failed(format!(
                        "SASL authentication failed (error {}): {message}",
                        answer.error_code
                    )));
                }
                received = Some(answer.auth_bytes.to_vec());
            }
            if finished {
                break;
            }
        }
    }
    connection.request(key, version, request).await.map_err(failed)
}

/// An admin connection: requests in turn, each with its correlation id.
struct Connection {
    stream: Box<dyn Stream>,
    correlation: i32,
}

impl Connection {
    async fn request<Q: Encodable + HeaderVersion, R: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Q,
    ) -> Result<R, String> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("coupon-admin")));
        let mut body = BytesMut::new();
        header.encode(&mut body, Q::header_version(version)).map_err(|e| format!("encode: {e}"))?;
        request.encode(&mut body, version).map_err(|e| format!("encode: {e}"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).map_err(|e| format!("size: {e}"))?);
        frame.extend_from_slice(&body);

        self.stream.write_all(&frame).await.map_err(|e| format!("write: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("write: {e}"))?;
        let size = self.stream.read_i32().await.map_err(|e| format!("read: {e}"))?;
        let mut reply = vec![0; usize::try_from(size).map_err(|e| format!("size: {e}"))?];
        self.stream.read_exact(&mut reply).await.map_err(|e| format!("read: {e}"))?;
        let mut reply = bytes::Bytes::from(reply);
        ResponseHeader::decode(&mut reply, R::header_version(version)).map_err(|e| format!("decode: {e}"))?;
        let response = R::decode(&mut reply, version).map_err(|e| format!("decode: {e}"))?;
        if reply.has_remaining() {
            tracing::debug!(api = ?key, left = reply.remaining(), "bytes left after a Kafka admin response");
        }
        Ok(response)
    }
}
