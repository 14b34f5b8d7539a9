//! The one error shape of SPEC §5, for every 4xx and 5xx any server of the service sends,
//! framework errors (bad JSON, wrong types, unknown routes, oversized bodies) included:
//!
//! `{"code","message","status","path","timestamp","fieldErrors":[{"field","message"}]}`
//!
//! `ResponseError::error_response` cannot see the request, so a [`Problem`] rides on the response
//! and the envelope middleware writes the body, path included. The business API turns its own
//! error codes into a `Problem`; this module knows only the codes of HTTP itself.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::SecondsFormat;
use coupon_domain::clock::{Clock, SystemClock};
use serde::Serialize;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answered to a client: its status, SPEC §5 code and message, invalid fields, and extra
/// response headers (`Retry-After`, `X-RateLimit-*`, `Allow`).
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub field_errors: Vec<FieldError>,
    pub headers: Vec<(&'static str, String)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            field_errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `INVALID_REQUEST`: the request cannot be read (malformed JSON, a wrong type, a bad path or
    /// query parameter).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// The problem for a status the framework produced by itself (the router's 404, a panic
    /// turned 500, …).
    pub fn for_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
            StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
            StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
            StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
            StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
            s if s.is_server_error() => "INTERNAL_ERROR",
            _ => "INVALID_REQUEST",
        };
        Self::new(status, code, status.canonical_reason().unwrap_or("Request failed"))
    }

    /// The envelope for a request path.
    pub fn body<'a>(&'a self, path: &'a str) -> Body<'a> {
        Body {
            code: &self.code,
            message: &self.message,
            status: self.status.as_u16(),
            path,
            timestamp: SystemClock.now().to_rfc3339_opts(SecondsFormat::Millis, true),
            field_errors: &self.field_errors,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.as_str()));
        }
        let mut response = builder.finish();
        response.extensions_mut().insert(self.clone());
        response
    }
}

/// Marks a response whose error status is deliberate and whose body must pass through as it is
/// (the readiness report's 503).
#[derive(Debug, Clone, Copy)]
pub struct Verbatim;

/// The body of every error (SPEC §5).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Body<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub status: u16,
    pub path: &'a str,
    pub timestamp: String,
    pub field_errors: &'a [FieldError],
}

/// JSON body errors: malformed JSON, a wrong type, a missing field, the wrong content type, or a
/// body over the limit.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let problem = match &err {
        J::Overflow { limit } | J::OverflowKnownLength { limit, .. } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Request body exceeds {limit} bytes"),
        ),
        J::ContentType => Problem::invalid_request("Content-Type must be application/json"),
        J::Deserialize(e) if e.is_data() => Problem::invalid_request(format!("Invalid request body: {e}")),
        J::Deserialize(e) => Problem::invalid_request(format!("Malformed JSON: {e}")),
        other => Problem::invalid_request(format!("Invalid request body: {other}")),
    };
    problem.into()
}

/// Path parameter errors (e.g. a non-numeric id).
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    Problem::invalid_request(format!("Invalid path parameter: {err}")).into()
}

/// Query string errors.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    Problem::invalid_request(format!("Invalid query parameter: {err}")).into()
}
