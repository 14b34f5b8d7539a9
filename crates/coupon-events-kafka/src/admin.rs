//! Topics created with their retention (SPEC §10: `coupon.*` 7 days, DLQs 30 days, both settable).
//!
//! rskafka 0.6 creates topics without configuration (its CreateTopics request carries no
//! `configs`) and has no request to change a topic's configuration, so this module sends those
//! two admin requests itself, encoded by the `kafka-protocol` crate: Metadata (v1) to find the
//! controller, CreateTopics (v2) with `retention.ms` to it, and DescribeConfigs (v1) to read a
//! topic's retention back. One short-lived connection per call, under the request timeout; only
//! at start-up and in tests.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BrokerError;

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
pub async fn create_topics(
    bootstrap: &[String],
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<String>, BrokerError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let controller = tokio::time::timeout(timeout, controller(bootstrap))
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
        tokio::time::timeout(timeout, call(&controller, ApiKey::CreateTopics, 2, &request))
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
pub async fn retention_of(
    bootstrap: &[String],
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
        let address = controller(bootstrap).await?;
        call::<_, DescribeConfigsResponse>(&address, ApiKey::DescribeConfigs, 1, &request).await
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

/// The controller's `host:port`, from the first bootstrap broker that answers Metadata.
async fn controller(bootstrap: &[String]) -> Result<String, BrokerError> {
    let mut last = BrokerError::Admin("no bootstrap broker".into());
    for address in bootstrap {
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        match call::<_, MetadataResponse>(address, ApiKey::Metadata, 1, &request).await {
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

/// One request and its response over a fresh connection to `address`.
async fn call<Q: Encodable + HeaderVersion, R: Decodable + HeaderVersion>(
    address: &str,
    key: ApiKey,
    version: i16,
    request: &Q,
) -> Result<R, BrokerError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        BrokerError::Admin(format!("{key:?} to {address}: {what}: {e}"))
    };
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("coupon-admin")));
    let mut body = BytesMut::new();
    header.encode(&mut body, Q::header_version(version)).map_err(|e| failed("encode", &e))?;
    request.encode(&mut body, version).map_err(|e| failed("encode", &e))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).map_err(|e| failed("size", &e))?);
    frame.extend_from_slice(&body);

    let mut stream = TcpStream::connect(address).await.map_err(|e| failed("connect", &e))?;
    stream.write_all(&frame).await.map_err(|e| failed("write", &e))?;
    let size = stream.read_i32().await.map_err(|e| failed("read", &e))?;
    let mut reply = vec![0; usize::try_from(size).map_err(|e| failed("size", &e))?];
    stream.read_exact(&mut reply).await.map_err(|e| failed("read", &e))?;
    let mut reply = bytes::Bytes::from(reply);
    ResponseHeader::decode(&mut reply, R::header_version(version)).map_err(|e| failed("decode", &e))?;
    let response = R::decode(&mut reply, version).map_err(|e| failed("decode", &e))?;
    if reply.has_remaining() {
        tracing::debug!(api = ?key, left = reply.remaining(), "bytes left after a Kafka admin response");
    }
    Ok(response)
}
