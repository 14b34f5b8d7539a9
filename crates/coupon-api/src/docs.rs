//! The OpenAPI description of the HTTP API, generated from the handlers' annotations (utoipa), served
//! at `/api-docs/openapi.json` with Swagger UI at `/swagger-ui/`. A test checks that every documented
//! operation is really served, so the document cannot drift from the routes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ErrorBody, ErrorCode, FieldError};
use crate::{checkout, coupons, ops, policies, wallet};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Coupon service",
        description = "Coupon policies, issuing, two-phase use and wallets. Every error has the ErrorBody shape.",
        version = "1.0.0"
    ),
    paths(
        policies::create,
        policies::list,
        policies::get,
        policies::change,
        policies::deactivate,
        policies::set_cap,
        policies::statistics,
        coupons::download,
        coupons::direct_issue,
        coupons::validate,
        checkout::reserve,
        checkout::apply,
        checkout::release,
        checkout::release_alias,
        checkout::confirm,
        wallet::list,
        wallet::expiring,
        wallet::summary,
        wallet::daily,
        wallet::run_job,
        ops::live,
        ops::ready,
        ops::metrics,
    ),
    components(schemas(ErrorBody, ErrorCode, FieldError, wallet::WalletFilterName, wallet::JobNameValue)),
    modifiers(&Security),
    tags(
        (name = "policies", description = "Coupon policies (admin)"),
        (name = "coupons", description = "Issuing coupons"),
        (name = "checkout", description = "Two-phase use: hold, confirm, release"),
        (name = "wallet", description = "A user's coupons"),
        (name = "statistics", description = "Daily statistics and scheduler jobs (admin)"),
        (name = "operations", description = "Health and metrics (open)")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The two ways callers identify themselves.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of COUPON_ADMIN_TOKENS"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-User-Id",
                "The user, as the gateway identified them",
            ))),
        );
    }
}

/// Serves the document and Swagger UI.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/swagger-ui/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi()));
}
