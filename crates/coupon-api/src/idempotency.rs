//! `Idempotency-Key` on every POST, PATCH and DELETE (SPEC §11.1).
//!
//! [`keyed`] wraps every write route (POST, PATCH, DELETE). A write by an authenticated caller
//! that carries the header claims its key (scoped to the caller, method and path) before the
//! handler runs. A retry with the same body
//! gets the stored answer with `Idempotent-Replayed: true`; another body 422
//! `IDEMPOTENCY_KEY_REUSED`; a retry while the first still runs 409 `IDEMPOTENCY_IN_PROGRESS`.
//!
//! Handlers that change state hand the domain a receipt ([`Idempotency::cause`] and friends)
//! whose closure renders the answer of the effect; the store writes it in the effect's own
//! transaction. Answers that changed nothing (validation, refusals) are stored here after the
//! handler; 5xx and 429 free the key.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use coupon_domain::context::Cause;
use coupon_domain::idempotency::{
    Answer, Claim, Claimed, Entry, Fingerprint, IdempotencyStore, KeyScope, Receipt,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::wire::correlation_id;

/// The request header.
pub const KEY_HEADER: &str = "Idempotency-Key";
/// [`KEY_HEADER`] as a header name, for lookups (a lookup by a `&str` allocates the name).
const KEY_HEADER_NAME: HeaderName = HeaderName::from_static("idempotency-key");
/// The header of a replayed answer.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// Where keys are kept and for how long.
#[derive(Clone)]
pub struct Keys {
    pub store: Arc<dyn IdempotencyStore>,
    /// `COUPON_IDEMPOTENCY_TTL`.
    pub ttl: Duration,
    /// `COUPON_IDEMPOTENCY_LEASE`: how long a request holding a key blocks its retries if it
    /// dies without an answer.
    pub lease: Duration,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("ttl", &self.ttl).field("lease", &self.lease).finish_non_exhaustive()
    }
}

/// The claim a running request holds, shared by the middleware and the handler.
#[derive(Clone)]
struct Held {
    claim: Claim,
    receipt: Arc<Mutex<Option<Receipt>>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("claim", &self.claim.id).finish_non_exhaustive()
    }
}

impl Held {
    fn answered(&self) -> bool {
        self.receipt.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(Receipt::answered)
    }
}

/// A handler's view of the request's key: absent when the client sent none.
#[derive(Debug, Clone, Default)]
pub struct Idempotency(Option<Held>);

impl FromRequest for Idempotency {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self(req.extensions().get::<Held>().cloned())))
    }
}

impl Idempotency {
    /// The receipt whose answer is what `render` makes of the request's effect, a `T`; `None`
    /// without a key.
    pub fn receipt<T: Any>(
        &self,
        render: impl Fn(&T) -> Option<Entry> + Send + Sync + 'static,
    ) -> Option<Receipt> {
        let held = self.0.as_ref()?;
        let receipt = Receipt::new(held.claim.clone(), render);
        *held.receipt.lock().unwrap_or_else(PoisonError::into_inner) = Some(receipt.clone());
        Some(receipt)
    }

    /// The cause of the request's change: its correlation id and receipt.
    pub fn cause<T: Any>(
        &self,
        req: &HttpRequest,
        render: impl Fn(&T) -> Option<Entry> + Send + Sync + 'static,
    ) -> Cause {
        Cause { correlation_id: correlation_id(req), receipt: self.receipt(render) }
    }

    /// What the committed transactions of an earlier run of this request did (direct issue).
    pub fn parts(&self) -> &[Vec<u8>] {
        self.0.as_ref().map_or(&[], |held| held.claim.parts.as_slice())
    }
}

/// The answer `body` with `status`, as it is sent and stored.
pub fn answer<T: Serialize>(status: StatusCode, body: &T) -> Option<Entry> {
    let body = serde_json::to_vec(body).ok()?;
    Some(Entry::Answer(Answer { status: status.as_u16(), body }))
}

/// Who may call a write route, and so whose keys it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// `X-User-Id`: keys are the user's.
    User,
    /// An accepted admin token: keys are the token's.
    Admin,
}

/// A write route (POST, PATCH, DELETE) that takes an `Idempotency-Key` from `who`.
pub fn keyed(who: Who, route: actix_web::Route) -> actix_web::Route {
    route.wrap(from_fn(move |req, next| idempotency(who, req, next)))
}

/// The middleware (see the module documentation). A request that is not authenticated as `who`
/// goes straight to its handler, which refuses it: keys are only for known callers.
///
/// # Errors
/// What the handler or the body extraction raised.
async fn idempotency(
    who: Who,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(raw) = req.headers().get(KEY_HEADER_NAME).cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let (Some(keys), Some(caller)) =
        (req.app_data::<web::Data<Keys>>().cloned(), caller(who, req.request()).await)
    else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let key = match parse_key(&raw) {
        Ok(key) => key,
        Err(e) => return Ok(req.error_response(e)),
    };
    let body = req.extract::<web::Bytes>().await?;
    req.set_payload(Payload::from(body.clone()));
    let scope =
        KeyScope { caller, method: req.method().as_str().to_owned(), path: req.path().to_owned(), key };
    let fingerprint = fingerprint(req.query_string(), &body);
    let claimed = keys.store.claim(&scope, &fingerprint, keys.lease, keys.ttl).await;
    let claim = match claimed {
        Ok(Claimed::Run(claim)) => claim,
        Ok(Claimed::Replay(answer)) => {
            metrics::counter!("coupon_idempotent_replays_total").increment(1);
            return Ok(req.into_response(replay(&answer)));
        }
        Ok(Claimed::Reused) => {
            let error = ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "This Idempotency-Key was used with another request body or query",
            );
            return Ok(req.error_response(error));
        }
        Ok(Claimed::InProgress) => {
            let mut error = ApiError::new(
                ErrorCode::IdempotencyInProgress,
                "A request with this Idempotency-Key is running",
            );
            error.headers.push(("Retry-After", "1".into()));
            return Ok(req.error_response(error));
        }
        Err(e) => return Ok(req.error_response(ApiError::from(e))),
    };
    let held = Held { claim, receipt: Arc::default() };
    req.extensions_mut().insert(held.clone());
    let res = coupon_http::enveloped(next.call(req).await?);
    finish(&keys, &held, res).await
}

/// Stores the answer the client gets, or frees the key when there is none to keep.
async fn finish(
    keys: &Keys,
    held: &Held,
    res: ServiceResponse<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let status = res.status();
    let kept = status.is_success() || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS);
    if !kept {
        if let Err(e) = keys.store.release(&held.claim).await {
            tracing::warn!(error = %e, "an idempotency key could not be freed; it lapses with its lease");
        }
        return Ok(res);
    }
    if held.answered() {
        return Ok(res);
    }
    let (req, response) = res.into_parts();
    let (head, body) = response.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
    let answer = Answer { status: status.as_u16(), body: bytes.to_vec() };
    if let Err(e) = keys.store.answer(&held.claim, &answer).await {
        tracing::warn!(error = %e, "an idempotency key's answer could not be stored; a retry runs again");
        if let Err(e) = keys.store.release(&held.claim).await {
            tracing::warn!(error = %e, "an idempotency key could not be freed; it lapses with its lease");
        }
    }
    Ok(ServiceResponse::new(req, head.set_body(BoxBody::new(bytes))))
}

/// A stored answer, sent again.
fn replay(answer: &Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response.insert_header((REPLAYED_HEADER, HeaderValue::from_static("true")));
    response.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    let mut response = response.body(answer.body.clone());
    // The stored body is the final one (an error already in its envelope).
    response.extensions_mut().insert(coupon_http::envelope::Verbatim);
    response
}

/// 1–255 printable ASCII characters.
fn parse_key(raw: &HeaderValue) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        let mut error = ApiError::validation(vec![coupon_http::envelope::FieldError {
            field: KEY_HEADER.into(),
            message: "must be 1-255 printable ASCII characters".into(),
        }]);
        error.message = "Invalid Idempotency-Key header".into();
        return Err(error);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Whose key it is: the user, or the admin token (by digest, never the token itself); `None`
/// when the request is not authenticated as `who`.
async fn caller(who: Who, req: &HttpRequest) -> Option<String> {
    match who {
        Who::User => Caller::extract(req).await.ok().map(|Caller(user)| format!("user:{user}")),
        Who::Admin => {
            Admin::extract(req).await.ok()?;
            let token = req.headers().get(AUTHORIZATION)?;
            Some(format!("admin:{}", hex(&Sha256::digest(token.as_bytes())[..16])))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the query string and of the body as canonical JSON (keys sorted, numbers
/// normalised, no whitespace); a body that is not JSON counts as its bytes. The query is part of
/// the request (`DELETE …?expireIssued=true` is another request than without it).
fn fingerprint(query: &str, body: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(query.len().to_be_bytes());
    hasher.update(query.as_bytes());
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut canonical = String::with_capacity(body.len());
            canonical_json(&value, &mut canonical);
            hasher.update(b"json:");
            hasher.update(canonical.as_bytes());
        }
        Err(_) => {
            hasher.update(b"raw:");
            hasher.update(body);
        }
    }
    hasher.finalize().into()
}

fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            let text = n.to_string();
            match text.parse::<rust_decimal::Decimal>() {
                Ok(d) => out.push_str(&d.normalize().to_string()),
                Err(_) => out.push_str(&text),
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_differ_only_in_layout_key_order_or_number_spelling_are_the_same_request_and_queries_differ()
     {
        let a = fingerprint("", br#"{"userId": 7, "couponPolicyId": 1.0, "x": {"b": [1, 2], "a": null}}"#);
        let b = fingerprint("", br#"{"couponPolicyId":1,"x":{"a":null,"b":[1,2.00]},"userId":7}"#);
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("", br#"{"couponPolicyId":1,"x":{"a":null,"b":[2,1]},"userId":7}"#));
        assert_ne!(fingerprint("", br#""1""#), fingerprint("", b"1"), "a string is not a number");
        assert_eq!(fingerprint("", b""), fingerprint("", b""));
        assert_ne!(fingerprint("", b"not json"), fingerprint("", b"not json!"));
        assert_ne!(
            fingerprint("expireIssued=true", b""),
            fingerprint("", b""),
            "the query is part of the request"
        );
    }

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        let parse = |s: &[u8]| parse_key(&HeaderValue::from_bytes(s).expect("header"));
        assert!(parse(b"order-42:attempt 1").is_ok());
        assert!(parse(&[b'k'; 255]).is_ok());
        assert!(parse(&[b'k'; 256]).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"tab\there").is_err());
        assert!(parse("caf\u{e9}".as_bytes()).is_err());
    }
}
