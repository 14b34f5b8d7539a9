//! The admin console (SPEC §11.8) at `/admin`: a page, its script, its style sheet and the vendored
//! chart library (Chart.js 4, from npm; `console/vendor/`), embedded in the binary with
//! `include_bytes!`. Nothing is fetched from elsewhere at run time. The script calls the public API
//! with the admin token the person signs in with, so the console can do nothing the API does not
//! allow; it has no route of its own besides these files.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use coupon_http::resource;

/// Only this origin's scripts, styles and API; no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A file of the console: its name under `/admin/assets/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const PAGE: &[u8] = include_bytes!("../console/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../console/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../console/style.css"),
    },
    Asset {
        name: "chart.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../console/vendor/chart.umd.min.js"),
    },
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin", "GET").route(web::get().to(page)))
        .service(resource("/admin/", "GET").route(web::get().to(page)))
        .service(resource("/admin/assets/{file}", "GET").route(web::get().to(asset)));
}

fn secured(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    response
}

async fn page() -> HttpResponse {
    secured(HttpResponse::Ok()).content_type("text/html; charset=utf-8").body(PAGE)
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, coupon_http::envelope::Problem> {
    let asset = ASSETS.iter().find(|asset| asset.name == file.as_str()).ok_or_else(|| {
        coupon_http::envelope::Problem::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No such console file",
        )
    })?;
    Ok(secured(HttpResponse::Ok()).content_type(asset.content_type).body(asset.bytes))
}
