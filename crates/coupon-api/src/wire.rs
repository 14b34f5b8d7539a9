//! Pieces of the wire format shared by the endpoints: instants, ids in paths, paging, the
//! correlation id of a request.

use actix_web::http::header::HeaderName;
use actix_web::{HttpMessage, HttpRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use coupon_domain::clock::is_supported;
use coupon_domain::money::Money;
use rust_decimal::Decimal;
use serde::Deserialize;
use tracing_actix_web::RequestId;

use crate::error::{ApiError, ErrorCode, FieldError};

/// RFC 3339 in UTC with a `Z`, to the second (`2024-01-01T10:00:00Z`).
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn maybe_instant(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(instant)
}

/// `X-Correlation-Id`, named once: a lookup by a `&str` builds (and allocates) the name each time.
const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The id that ties what this request causes (events, logs) together: the caller's
/// `X-Correlation-Id` when it sends one, else this request's id.
pub fn correlation_id(req: &HttpRequest) -> String {
    req.headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map(str::to_owned)
        .or_else(|| req.extensions().get::<RequestId>().map(ToString::to_string))
        .unwrap_or_default()
}

/// An integer body field that also takes a number with a zero fraction (`2133.0`): JSON Schema's
/// `integer` allows it, and clients that compute in floating point send it. For
/// `#[serde(default, deserialize_with = "whole_number")]` on an `Option<i64>`.
///
/// # Errors
/// A number with a fraction, or one beyond `i64`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.map(|n| integer::<D>(&n)).transpose()
}

/// [`whole_number`] for a list.
///
/// # Errors
/// As [`whole_number`], for any item.
pub fn whole_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    Option::<Vec<serde_json::Number>>::deserialize(d)?
        .map(|numbers| numbers.iter().map(integer::<D>).collect())
        .transpose()
}

fn integer<'de, D: serde::Deserializer<'de>>(n: &serde_json::Number) -> Result<i64, D::Error> {
    let text = n.to_string();
    n.as_i64()
        .or_else(|| {
            let exact = text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text)).ok()?;
            if exact.fract().is_zero() { i64::try_from(exact).ok() } else { None }
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{text} is not an integer within 64 bits")))
}

/// Collects field errors while a request body is checked.
#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), message: message.into() });
    }

    /// A money field that a `NUMERIC(15,2)` column holds exactly (SPEC §10), or a field error.
    pub fn money(&mut self, field: &str, value: Option<Decimal>) -> Option<Money> {
        match value.map(Money::parse) {
            Some(Err(e)) => {
                self.fail(field, e.to_string());
                None
            }
            Some(Ok(money)) => Some(money),
            None => None,
        }
    }

    /// Whether a text field is at most `max` characters without control characters (SPEC §10:
    /// PostgreSQL text cannot hold NUL, and the columns are bounded); a field error when not.
    pub fn text(&mut self, field: &str, value: Option<&str>, max: usize) -> bool {
        let fits = value.is_none_or(|v| v.chars().count() <= max && !v.chars().any(char::is_control));
        if !fits {
            self.fail(field, format!("must be at most {max} characters without control characters"));
        }
        fits
    }

    /// An instant within the years the service supports (SPEC §10: 2000–9999), or a field error.
    pub fn instant(&mut self, field: &str, value: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        match value {
            Some(t) if !is_supported(t) => {
                self.fail(field, "must lie in the years 2000 to 9999");
                None
            }
            other => other,
        }
    }

    /// A required field's value, or a field error.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.fail(field, "is required");
        }
        value
    }

    /// A required text field: present, not blank, at most `max` characters without control
    /// characters; a field error when not.
    pub fn required_text(&mut self, field: &str, value: Option<String>, max: usize) -> Option<String> {
        let value = self.required(field, value)?;
        if value.trim().is_empty() {
            self.fail(field, "must not be blank");
            return None;
        }
        self.text(field, Some(&value), max).then_some(value)
    }

    /// `VALIDATION_ERROR` listing every failure, if any.
    ///
    /// # Errors
    /// When at least one check failed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::validation(self.0)) }
    }
}

/// `limit` of a paged query: default when absent, else within 1..=max.
///
/// # Errors
/// `VALIDATION_ERROR` when out of range.
pub fn page_limit(limit: Option<i64>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if n >= 1 && n <= i64::from(max) => Ok(u32::try_from(n).unwrap_or(max)),
        Some(_) => Err(ApiError::validation(vec![FieldError {
            field: "limit".into(),
            message: format!("must be between 1 and {max}"),
        }])),
    }
}

/// A policy id from a path: a non-positive id names no policy.
///
/// # Errors
/// A coupon id from a path: a non-positive one names no coupon (404 `COUPON_NOT_FOUND`).
pub fn coupon_id(raw: i64) -> Result<coupon_domain::id::CouponId, ApiError> {
    coupon_domain::id::CouponId::new(raw).ok_or_else(coupon_not_found)
}

/// 404 `COUPON_NOT_FOUND`.
pub fn coupon_not_found() -> ApiError {
    ApiError::new(ErrorCode::CouponNotFound, "no coupon has this id")
}

/// 404 `POLICY_NOT_FOUND`.
pub fn policy_id(raw: i64) -> Result<coupon_domain::id::PolicyId, ApiError> {
    coupon_domain::id::PolicyId::new(raw).ok_or_else(policy_not_found)
}

/// 404 `POLICY_NOT_FOUND`.
pub fn policy_not_found() -> ApiError {
    ApiError::new(ErrorCode::PolicyNotFound, "no coupon policy has this id")
}
