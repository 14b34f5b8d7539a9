//! The dead letters of the consumed topics over HTTP (admin): list them with their reasons, and
//! replay one once whatever refused it has been put right (the event-worker's `dlq` command does
//! the same from a shell).

use actix_web::{HttpResponse, web};
use coupon_domain::dead_letters::{LetterFilter, Replay};
use coupon_domain::port::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Who, keyed};
use crate::state::AppState;
use crate::wire::Checks;
use coupon_http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/admin/dlq", "GET").route(web::get().to(list)))
        .service(resource("/api/admin/dlq/replay", "POST").route(keyed(Who::Admin, web::post().to(replay))));
}

/// The dead letters live on Kafka (and a replay forgets a row in PostgreSQL): an unreachable one
/// is named as such, not as the coupon store.
fn unavailable(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(cause) => ApiError::unavailable("the event broker or the database", &cause),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only letters of this consumed topic.
    topic: Option<String>,
    /// Only letters with this reason code (e.g. PAYMENT_MISMATCH).
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LettersBody {
    letters: Vec<LetterBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LetterBody {
    /// The consumed topic the record came from.
    topic: String,
    partition: i32,
    offset: i64,
    /// The reason code (docs/API.md lists them).
    reason: String,
    failed_at: String,
    event_id: Option<String>,
    /// False when the DLQ kept only the first bytes of the value: such a record cannot be replayed.
    replayable: bool,
}

#[utoipa::path(get, path = "/api/admin/dlq", tag = "support", security(("admin" = [])),
    params(("topic" = Option<String>, Query, description = "Only letters of this consumed topic"),
           ("reason" = Option<String>, Query, description = "Only letters with this reason code, e.g. PAYMENT_MISMATCH")),
    responses(
        (status = 200, description = "The dead letters, by topic, partition and offset", body = LettersBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE: Kafka cannot be reached", body = ErrorBody)))]
pub(crate) async fn list(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = LetterFilter { topic: query.topic, code: query.reason };
    let letters = state.dead_letters.list(&filter).await.map_err(unavailable)?;
    let letters = letters
        .into_iter()
        .map(|l| LetterBody {
            topic: l.topic,
            partition: l.partition,
            offset: l.offset,
            reason: l.code,
            failed_at: l.failed_at,
            event_id: l.event_id,
            replayable: l.replayable,
        })
        .collect();
    Ok(HttpResponse::Ok().json(LettersBody { letters }))
}

/// Body of `POST /api/admin/dlq/replay`: the record, as the list names it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayBody {
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 249)]
    topic: Option<String>,
    #[schema(required = true, nullable = false, value_type = i32, minimum = 0)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    partition: Option<i64>,
    #[schema(required = true, nullable = false, value_type = i64, minimum = 0)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedBody {
    topic: String,
    partition: i32,
    offset: i64,
    /// Where the record was produced again, on the same topic and partition.
    new_offset: i64,
}

#[utoipa::path(post, path = "/api/admin/dlq/replay", tag = "support", security(("admin" = [])),
    request_body(content = ReplayBody, example = json!({"topic": "payment.completed.v1", "partition": 0, "offset": 42})),
    responses(
        (status = 200, description = "Produced again (its dedupe row forgotten first); the consumers apply it like any record, and a record refused again goes to the DLQ again", body = ReplayedBody),
        (status = 400, description = "VALIDATION_ERROR, or INVALID_REQUEST: the DLQ kept only part of the value", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no dead letter of that record", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE: Kafka or PostgreSQL cannot be reached", body = ErrorBody)))]
pub(crate) async fn replay(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<ReplayBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let topic = body.topic.filter(|t| !t.trim().is_empty() && t.len() <= 249);
    if topic.is_none() {
        checks.fail("topic", "is required: a consumed topic, 1 to 249 characters");
    }
    let partition = body.partition.and_then(|p| i32::try_from(p).ok()).filter(|p| *p >= 0);
    if partition.is_none() {
        checks.fail("partition", "is required, 0 to 2147483647");
    }
    let offset = body.offset.filter(|o| *o >= 0);
    if offset.is_none() {
        checks.fail("offset", "is required, 0 or more");
    }
    checks.finish()?;
    let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    match state.dead_letters.replay(&topic, partition, offset).await.map_err(unavailable)? {
        Replay::Replayed { offset: new_offset } => {
            tracing::info!(%topic, partition, offset, new_offset, "DLQ record replayed by an admin");
            Ok(HttpResponse::Ok().json(ReplayedBody { topic, partition, offset, new_offset }))
        }
        Replay::NoSuchLetter => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no dead letter of {topic} partition {partition} offset {offset}"),
        )),
        Replay::Truncated => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the DLQ kept only the first bytes of this record's value; it cannot be replayed",
        )),
    }
}
