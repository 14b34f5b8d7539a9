//! Middleware every server of the service runs: the request span, the error envelope and HTTP
//! metrics.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::envelope::{Problem, Verbatim};

/// The root span of every request: method, path and request id, then route and status once
/// answered. tracing-actix-web's default builder asks for the route before routing (the regex
/// walk [`route_label`] avoids) and formats connection details nobody reads here.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(ToString::to_string);
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.target = %request.path(),
            http.route = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
            request_id = request_id,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if span.is_disabled() {
            return;
        }
        if let Ok(response) = outcome {
            span.record("http.route", route_label(Some(response.request())));
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The route pattern of a request the router has seen, for metric labels. After routing, actix
/// finds the pattern by the matched resource's index; asked before, it runs the router's regexes
/// over the path again (a tenth of a sold-out answer's CPU). Unrouted requests are `unmatched`.
fn route_label(req: Option<&HttpRequest>) -> String {
    req.and_then(HttpRequest::match_pattern).unwrap_or_else(|| "unmatched".to_owned())
}

/// Gives every 4xx/5xx response the SPEC §5 envelope. Errors raised as a [`Problem`] carry their
/// code and message; any other error response (the router's 404 and 405, a body over the limit,
/// a panic turned 500 by the framework) gets the code that matches its status. Each one counts in
/// `http_server_errors_total{route,code}` (the sold-out rate is its `COUPON_SOLD_OUT` series).
pub async fn error_envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let path = req.path().to_owned();
    match next.call(req).await {
        Ok(res) => Ok(enveloped(res)),
        Err(err) => {
            // Errors returned by inner middleware carry no request; answer for the same path.
            let response = err.error_response();
            let problem = problem_of(&response);
            count_error(route_label(None), &problem.code);
            Err(actix_web::error::InternalError::from_response(
                problem.message.clone(),
                render(&problem, &path, &response),
            )
            .into())
        }
    }
}

/// The response as the client gets it: an error status in the SPEC §5 envelope, counted, and
/// marked [`Verbatim`] so that an outer [`error_envelope`] passes it through; anything else as it
/// is. For middleware that needs the final bytes of an answer (idempotency keys store them).
pub fn enveloped<B: MessageBody + 'static>(res: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    let is_error = res.status().is_client_error() || res.status().is_server_error();
    if !is_error || res.response().extensions().contains::<Verbatim>() {
        return res.map_into_boxed_body();
    }
    let (http_req, response) = res.into_parts();
    let response = response.map_into_boxed_body();
    let problem = problem_of(&response);
    count_error(route_label(Some(&http_req)), &problem.code);
    let mut rendered = render(&problem, http_req.path(), &response);
    rendered.extensions_mut().insert(Verbatim);
    ServiceResponse::new(http_req, rendered)
}

fn count_error(route: String, code: &str) {
    metrics::counter!("http_server_errors_total", "route" => route, "code" => code.to_owned()).increment(1);
}

/// The [`Problem`] behind an error response, or one made from its status when the framework
/// produced the response itself.
fn problem_of(response: &HttpResponse) -> Problem {
    let attached = response.extensions().get::<Problem>().cloned();
    attached.unwrap_or_else(|| Problem::for_status(response.status()))
}

/// The envelope response, keeping the original's headers (Retry-After, X-RateLimit-*, Allow).
fn render(problem: &Problem, path: &str, original: &HttpResponse) -> HttpResponse {
    let mut builder = HttpResponse::build(problem.status);
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    builder.json(problem.body(path))
}

/// Records `http_server_requests_total` and the `http_server_request_duration_seconds` histogram
/// by method, route pattern (never the raw path: ids would explode the label set) and status.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(res) => (route_label(Some(res.request())), res.status().as_u16().to_string()),
        Err(err) => (route_label(None), err.as_response_error().status_code().as_u16().to_string()),
    };
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    result
}
