//! Routing helpers every server shares: resources that answer 405 with `Allow`, and the 404 of
//! unknown routes, both in the SPEC §5 envelope.

use actix_web::http::StatusCode;
use actix_web::web;

use crate::envelope::Problem;

/// A resource whose unsupported methods answer 405 `METHOD_NOT_ALLOWED` with the `Allow` header
/// (RFC 9110; without its own default, actix would fall through to the app's 404). Every route of
/// the service is registered with it; `allow` lists the methods its routes serve, e.g. `"GET, POST"`.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}

async fn method_not_allowed(allow: &'static str) -> Result<actix_web::HttpResponse, Problem> {
    let mut problem = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this endpoint",
    );
    problem.headers.push(("Allow", allow.to_owned()));
    Err(problem)
}

pub(crate) async fn not_found() -> Result<actix_web::HttpResponse, Problem> {
    Err(Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such endpoint"))
}
