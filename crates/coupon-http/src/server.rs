//! Builds the HTTP servers of the service: api-server's public API and the small admin servers
//! of event-worker and scheduler. All of them share the same middleware stack, so every response
//! of every binary is traced, measured and, on error, in the SPEC §5 envelope.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::envelope::{json_error, path_error, query_error};
use crate::middleware::{RequestSpan, error_envelope, http_metrics};
use crate::ops::{self, OpsState};
use crate::routing::not_found;

/// Largest request body accepted (direct issue of 1,000 user ids fits comfortably).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How a server is run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// actix-web worker threads; 0 = one per core.
    pub workers: usize,
    /// Time given to in-flight requests after SIGTERM/SIGINT before connections are closed.
    pub shutdown_timeout: Duration,
    /// Whether the server stops by itself on SIGTERM/SIGINT (api-server). The worker and the
    /// scheduler handle signals themselves, to drain their own work first, and stop their admin
    /// server last.
    pub handle_signals: bool,
}

/// Starts serving on `listener`: the operational routes plus whatever `routes` registers, with
/// `app_data` shared by all workers.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve<D, R>(
    listener: TcpListener,
    ops_state: OpsState,
    app_data: D,
    routes: R,
    options: &ServerOptions,
) -> std::io::Result<Server>
where
    D: Clone + Send + 'static,
    R: Fn(&mut web::ServiceConfig, D) + Clone + Send + 'static,
{
    let ops_state = web::Data::new(ops_state);
    let mut server = HttpServer::new(move || {
        let data = app_data.clone();
        let routes = routes.clone();
        App::new()
            .wrap(from_fn(error_envelope))
            .wrap(from_fn(http_metrics))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(ops_state.clone())
            .app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(json_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .configure(ops::configure)
            .configure(move |cfg| routes(cfg, data))
            .default_service(web::to(not_found))
    })
    // Answers leave at once: with Nagle's algorithm a second response on a connection (pipelined
    // or kept alive) waits for the client's delayed ACK of the first, 40 ms on Linux.
    .tcp_nodelay(true)
    .listen(listener)?
    .shutdown_timeout(options.shutdown_timeout.as_secs());
    if !options.handle_signals {
        server = server.disable_signals();
    }
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    Ok(server.run())
}

/// The admin server of event-worker and scheduler: operational routes only, one worker thread,
/// no signal handling of its own (the binary drains its work first, then stops this last).
#[derive(Debug)]
pub struct AdminServer {
    port: u16,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Binds `host:port` (0 picks a free port) and starts serving.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(host: &str, port: u16, ops_state: OpsState) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port))?;
        let port = listener.local_addr()?.port();
        let options =
            ServerOptions { workers: 1, shutdown_timeout: Duration::from_secs(1), handle_signals: false };
        let server = serve(listener, ops_state, (), |_cfg, ()| {}, &options)?;
        let handle = server.handle();
        Ok(Self { port, handle, task: tokio::spawn(server) })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops serving and waits for the server to finish.
    ///
    /// # Errors
    /// When the server failed while running.
    pub async fn stop(self) -> std::io::Result<()> {
        self.handle.stop(true).await;
        self.task.await.map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::test::{TestRequest, call_service, init_service, read_body_json};
    use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};

    use crate::ops::Dependency;
    use crate::routing::resource;
    use serde_json::Value;

    use super::*;

    struct Down;
    impl Probe for Down {
        fn name(&self) -> &'static str {
            "redis"
        }
        fn check(&self) -> ProbeFuture<'_> {
            Box::pin(async {
                Err(ProbeError::unreachable("connection refused (os error 111) at 10.0.0.7:6379"))
            })
        }
    }

    fn state(dependencies: Vec<Dependency>) -> web::Data<OpsState> {
        web::Data::new(OpsState {
            dependencies,
            render_metrics: Arc::new(|| "# metrics\n".to_owned()),
            probe_timeout: Duration::from_secs(1),
        })
    }

    #[derive(serde::Deserialize)]
    struct Echo {
        #[allow(dead_code)]
        n: i64,
    }

    async fn echo(body: web::Json<Echo>) -> String {
        body.n.to_string()
    }

    macro_rules! app {
        ($probes:expr) => {
            init_service(
                App::new()
                    .wrap(from_fn(error_envelope))
                    .wrap(from_fn(http_metrics))
                    .app_data(state($probes))
                    .app_data(web::JsonConfig::default().limit(64).error_handler(json_error))
                    .configure(ops::configure)
                    .service(resource("/echo", "POST").route(web::post().to(echo)))
                    .default_service(web::to(not_found)),
            )
            .await
        };
    }

    #[actix_web::test]
    async fn unknown_route_gets_the_envelope() {
        let app = app!(vec![]);
        let res = call_service(&app, TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status().as_u16(), 404);
        let body: Value = read_body_json(res).await;
        assert_eq!(body["code"], "NOT_FOUND");
        assert_eq!(body["status"], 404);
        assert_eq!(body["path"], "/nope");
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(body["fieldErrors"], Value::Array(vec![]));
    }

    #[actix_web::test]
    async fn bad_json_wrong_type_and_oversize_get_the_envelope() {
        let app = app!(vec![]);
        let cases = [
            ("{not json", 400, "INVALID_REQUEST"),
            (r#"{"n":"seven"}"#, 400, "INVALID_REQUEST"),
            (
                r#"{"n":1,"pad":"0123456789012345678901234567890123456789012345678901234567890123"}"#,
                413,
                "PAYLOAD_TOO_LARGE",
            ),
        ];
        for (payload, status, code) in cases {
            let req = TestRequest::post()
                .uri("/echo")
                .insert_header(("content-type", "application/json"))
                .set_payload(payload)
                .to_request();
            let res = call_service(&app, req).await;
            assert_eq!(res.status().as_u16(), status, "{payload}");
            let body: Value = read_body_json(res).await;
            assert_eq!(body["code"], code, "{payload}");
            assert_eq!(body["path"], "/echo");
        }
    }

    #[actix_web::test]
    async fn wrong_method_gets_the_envelope() {
        let app = app!(vec![]);
        let res = call_service(&app, TestRequest::get().uri("/echo").to_request()).await;
        assert_eq!(res.status().as_u16(), 405);
        assert_eq!(res.headers().get("Allow").and_then(|v| v.to_str().ok()), Some("POST"));
        let body: Value = read_body_json(res).await;
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
        assert_eq!(body["status"], 405);
    }

    #[actix_web::test]
    async fn readiness_names_the_failed_dependency_and_a_short_reason_only() {
        let app = app!(vec![Dependency::required(Arc::new(Down))]);
        let res = call_service(&app, TestRequest::get().uri("/health/ready").to_request()).await;
        assert_eq!(res.status().as_u16(), 503);
        let body: Value = read_body_json(res).await;
        assert_eq!(body["status"], "DOWN");
        assert_eq!(body["checks"][0]["name"], "redis");
        assert_eq!(body["checks"][0]["status"], "DOWN");
        assert_eq!(body["checks"][0]["reason"], "UNREACHABLE");
        assert!(!body.to_string().contains("10.0.0.7"), "no raw error in the body: {body}");
    }

    #[actix_web::test]
    async fn an_optional_dependency_that_is_down_leaves_the_process_ready_but_degraded() {
        let app = app!(vec![Dependency::optional(Arc::new(Down))]);
        let res = call_service(&app, TestRequest::get().uri("/health/ready").to_request()).await;
        assert_eq!(res.status().as_u16(), 200);
        let body: Value = read_body_json(res).await;
        assert_eq!(body["status"], "DEGRADED");
        assert_eq!(body["checks"][0]["status"], "DEGRADED");
        assert_eq!(body["checks"][0]["reason"], "UNREACHABLE");
    }

    #[actix_web::test]
    async fn liveness_and_metrics_answer() {
        let app = app!(vec![]);
        let res = call_service(&app, TestRequest::get().uri("/health/live").to_request()).await;
        assert_eq!(res.status().as_u16(), 200);
        let res = call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(res.status().as_u16(), 200);
    }
}
