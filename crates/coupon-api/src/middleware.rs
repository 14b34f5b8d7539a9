//! Middleware every server of the service runs: the error envelope and HTTP metrics.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};

use crate::error::{ApiError, ErrorCode};

/// Marks a response whose error status is deliberate and whose body must pass through as it is
/// (the readiness report's 503).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verbatim;

/// The request's route pattern, matched once by [`http_metrics`] (matching runs the router's
/// regexes again) and read by the middleware inside it.
#[derive(Debug, Clone)]
struct Route(Arc<str>);

impl Route {
    fn label(route: Option<&Self>) -> String {
        route.map_or_else(|| "unmatched".to_owned(), |r| r.0.to_string())
    }
}

/// Gives every 4xx/5xx response the SPEC §5 envelope. Errors raised as [`ApiError`] carry their
/// code and message; any other error response (the router's 404 and 405, a body over the limit,
/// a panic turned 500 by the framework) gets the code that matches its status. Each one counts in
/// `http_server_errors_total{route,code}` (the sold-out rate is its `COUPON_SOLD_OUT` series).
pub async fn error_envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let path = req.path().to_owned();
    let route = req.extensions().get::<Route>().cloned();
    let (http_req, response) = match next.call(req).await {
        Ok(res) => {
            let is_error = res.status().is_client_error() || res.status().is_server_error();
            if !is_error || res.response().extensions().contains::<Verbatim>() {
                return Ok(res.map_into_boxed_body());
            }
            let (http_req, response) = res.into_parts();
            (http_req, response.map_into_boxed_body())
        }
        Err(err) => {
            // Errors returned by inner middleware carry no request; answer for the same path.
            let response = err.error_response();
            let api = api_error_of(&response);
            count_error(Route::label(route.as_ref()), api.code);
            return Err(actix_web::error::InternalError::from_response(
                api.message.clone(),
                render(&api, &path, &response),
            )
            .into());
        }
    };
    let api = api_error_of(&response);
    count_error(Route::label(route.as_ref()), api.code);
    Ok(ServiceResponse::new(http_req, render(&api, &path, &response)))
}

fn count_error(route: String, code: ErrorCode) {
    let code =
        serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    metrics::counter!("http_server_errors_total", "route" => route, "code" => code).increment(1);
}

/// The [`ApiError`] behind an error response, or one made from its status when the framework
/// produced the response itself.
fn api_error_of(response: &HttpResponse) -> ApiError {
    response.extensions().get::<ApiError>().cloned().unwrap_or_else(|| {
        let reason = response.status().canonical_reason().unwrap_or("Request failed");
        ApiError::new(ErrorCode::for_status(response.status()), reason)
    })
}

/// The envelope response, keeping the original's headers (Retry-After, X-RateLimit-*, Allow).
fn render(api: &ApiError, path: &str, original: &HttpResponse) -> HttpResponse {
    let mut builder = HttpResponse::build(api.code.status());
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    builder.json(api.body(path))
}

/// Records `http_server_requests_total` and the `http_server_request_duration_seconds` histogram
/// by method, route pattern (never the raw path: ids would explode the label set) and status.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = Route(req.match_pattern().map_or_else(|| Arc::from("unmatched"), Arc::from));
    let label = route.0.to_string();
    req.extensions_mut().insert(route);
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status().as_u16().to_string(),
        Err(err) => err.as_response_error().status_code().as_u16().to_string(),
    };
    let labels = [("method", method), ("route", label), ("status", status)];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    result
}
