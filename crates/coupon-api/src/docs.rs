//! The OpenAPI description of the HTTP API, generated from the handlers' annotations (utoipa), served
//! at `/api-docs/openapi.json` with Swagger UI at `/swagger-ui/`. A test checks that every documented
//! operation is really served, so the document cannot drift from the routes.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Required, Response, ResponseBuilder, ResponsesBuilder, Type,
};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ErrorBody, ErrorCode, FieldErrorBody};
use crate::{checkout, codes, coupons, dead_letters, policies, quote, support, wallet};

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
        codes::start,
        codes::jobs,
        codes::job,
        codes::export,
        coupons::download,
        coupons::direct_issue,
        coupons::validate,
        checkout::reserve,
        checkout::apply,
        checkout::release,
        checkout::release_alias,
        checkout::confirm,
        quote::quote,
        wallet::list,
        wallet::admin_list,
        wallet::coupon,
        wallet::catalogue,
        wallet::expiring,
        wallet::summary,
        wallet::daily,
        wallet::list_jobs,
        dead_letters::list,
        dead_letters::replay,
        wallet::run_job,
        support::revoke,
        support::use_coupon,
    ),
    components(schemas(ErrorBody, ErrorCode, FieldErrorBody, wallet::WalletFilterName, wallet::JobNameValue, codes::ExportFormat)),
    modifiers(&Security, &Operations, &IdempotencyKeys),
    tags(
        (name = "policies", description = "Coupon policies (admin)"),
        (name = "coupons", description = "Issuing coupons"),
        (name = "checkout", description = "Two-phase use: hold, confirm, release"),
        (name = "wallet", description = "A user's coupons"),
        (name = "support", description = "Support's view of users' coupons (admin)"),
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

/// The chassis's operational endpoints, served by api-server beside the business routes.
struct Operations;

impl Modify for Operations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let ops = [
            ("/health/live", "live", "The process answers", None),
            (
                "/health/ready",
                "ready",
                "Every required dependency answers; an optional one that does not is DEGRADED",
                Some("A required dependency is down; the body names it"),
            ),
            ("/metrics", "metrics", "Prometheus text exposition", None),
        ];
        for (path, id, ok, unavailable) in ops {
            let mut responses = ResponsesBuilder::new().response("200", Response::new(ok));
            if let Some(unavailable) = unavailable {
                responses = responses.response("503", Response::new(unavailable));
            }
            let operation =
                OperationBuilder::new().operation_id(Some(id)).tag("operations").responses(responses.build());
            openapi.paths.add_path_operation(path, vec![HttpMethod::Get], operation.build());
        }
    }
}

/// Every write takes an `Idempotency-Key` (SPEC §11.1), with its two refusals.
struct IdempotencyKeys;

impl Modify for IdempotencyKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let key = ParameterBuilder::new()
            .name(crate::idempotency::KEY_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the write safe to retry (SPEC §11.1): a retry with the same body gets the first \
                 answer with `Idempotent-Replayed: true`. Scoped to the caller, method and path; kept \
                 COUPON_IDEMPOTENCY_TTL.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[\\x20-\\x7E]+$")),
            ))
            .build();
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.patch, &mut item.delete].into_iter().flatten() {
                operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(key.clone()));
                let responses = &mut operation.responses.responses;
                for (status, code) in
                    [("400", "VALIDATION_ERROR (Idempotency-Key)"), ("409", "IDEMPOTENCY_IN_PROGRESS")]
                {
                    match responses.get_mut(status) {
                        Some(RefOr::T(response)) => {
                            response.description.push_str(", ");
                            response.description.push_str(code);
                        }
                        _ => {
                            responses.insert(status.into(), RefOr::T(error(code)));
                        }
                    }
                }
                responses.insert("422".into(), RefOr::T(error("IDEMPOTENCY_KEY_REUSED")));
            }
        }
    }
}

/// Where the AsyncAPI document of the events is served.
pub const ASYNCAPI_PATH: &str = "/api-docs/asyncapi.json";

/// Serves `document` (the events' AsyncAPI document, which the Kafka adapter owns) beside the
/// OpenAPI document.
pub fn asyncapi(cfg: &mut actix_web::web::ServiceConfig, document: &'static str) {
    cfg.service(coupon_http::resource(ASYNCAPI_PATH, "GET").route(actix_web::web::get().to(
        move || async move { actix_web::HttpResponse::Ok().content_type("application/json").body(document) },
    )));
}

pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/swagger-ui/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi()));
}
