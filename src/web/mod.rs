//! The HTTP side: [`Application::build`] is the one place where the server and its routes are
//! put together.

mod accounts;
mod admin;
mod api;
mod assets;
pub mod auth;
pub mod charts;
mod dashboard;
pub mod error;
mod ingest;
pub mod limits;
mod logging;
mod metrics;
mod pages;
mod reports;
mod webhooks;
mod widget;
mod workspace;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use serde::de::DeserializeOwned;
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::services::Services;
use error::ApiError;
pub use widget::{WidgetMessage, parse_message as parse_widget_message};

/// A built, listening, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    /// The separate `/metrics` listener and its port, when `metrics_bind` is set.
    metrics: Option<(u16, Server)>,
    services: Arc<Services>,
}

impl Application {
    /// Opens the store, starts the workers, seeds the demo if asked, binds the listener and
    /// builds the server. The port is known once this returns (`bind` may ask for port 0).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.bind)?;
        let port = listener.local_addr()?.port();
        let services = Services::start(settings.clone()).await?;
        if settings.demo {
            crate::demo::seed(&services).await?;
        }
        let data = web::Data::from(services.clone());
        let max_body = settings.max_body_bytes;
        let metrics_apart = settings.metrics_bind.is_some();
        let max_email = settings.max_email_bytes;
        let server = HttpServer::new(move || {
            App::new()
                // Innermost first: the CSRF guard and the rate limits run after the logger
                // saw the request, and their refusals get the security headers too.
                .wrap(actix_web::middleware::from_fn(auth::csrf_guard))
                .wrap(actix_web::middleware::from_fn(limits::limit_public))
                .wrap(ErrorHandlers::new().default_handler_client(json_client_error))
                .wrap(
                    // No page of Baton may be framed (clickjacking): the widget is a script
                    // that builds its own DOM on the host page, not a frame.
                    DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "same-origin"))
                        .add(("X-Frame-Options", "DENY"))
                        .add(("Cross-Origin-Opener-Policy", "same-origin"))
                        .add((
                            "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
                             object-src 'none'",
                        )),
                )
                .wrap(TracingLogger::<logging::RedactedRootSpan>::new())
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(web::FormConfig::default().limit(16 * 1024))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid path: {e}")).into()
                }))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid query string: {e}")).into()
                }))
                .route("/healthz", web::get().to(healthz))
                .configure(|cfg| {
                    if !metrics_apart {
                        cfg.route("/metrics", web::get().to(metrics::metrics));
                    }
                })
                .configure(|cfg| ingest::routes(cfg, max_email))
                .configure(reports::routes)
                .configure(accounts::routes)
                .configure(api::routes)
                .configure(webhooks::routes)
                .configure(widget::routes)
                .configure(pages::routes)
                .configure(dashboard::routes)
                .configure(workspace::routes)
                .configure(admin::routes)
                .configure(assets::routes)
                .default_service(web::to(|| async { ApiError::NotFound("route").error_response() }))
        })
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
        tracing::info!(port, "baton listening");
        let metrics = match &settings.metrics_bind {
            Some(addr) => {
                let listener = TcpListener::bind(addr)?;
                let metrics_port = listener.local_addr()?.port();
                let data = web::Data::from(services.clone());
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/metrics", web::get().to(metrics::metrics))
                        .route("/healthz", web::get().to(healthz))
                })
                .workers(1)
                .listen(listener)?
                .disable_signals()
                .run();
                tracing::info!(port = metrics_port, "metrics listening");
                Some((metrics_port, server))
            }
            None => None,
        };
        Ok(Self {
            port,
            server,
            metrics,
            services,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener, if `metrics_bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(p, _)| *p)
    }

    /// The running parts (for tests and the demo).
    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or [`ServerHandle::stop`]), then finishes in-flight
    /// requests, stops the workers, flushes the event shipper and closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let result = self.server.await;
        if let Some(handle) = metrics {
            handle.stop(true).await;
        }
        self.services.shutdown().await;
        result
    }
}

/// A server-sent event stream of HTML fragments named `event`, for live parts of pages:
/// rendered on connect, again after every routing change (a ticket queued, offered, accepted,
/// moved or closed; an agent's presence), coalesced to one render per 250 ms so it is fresh
/// within a second, and at least every `every` (figures that move with time); a keep-alive
/// every 15 s. `render` gives `None` when it has nothing to send this time.
pub(crate) fn live_html<F, Fut>(
    services: web::Data<Services>,
    event: &'static str,
    every: std::time::Duration,
    mut render: F,
) -> impl actix_web::Responder
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<String>> + Send,
{
    use actix_web_lab::sse;
    use std::time::Duration;
    let mut activity = services.router.activity();
    let (tx, rx) = tokio::sync::mpsc::channel::<sse::Event>(4);
    tokio::spawn(async move {
        loop {
            if let Some(html) = render().await
                && tx
                    .send(sse::Data::new(html).event(event).into())
                    .await
                    .is_err()
            {
                return;
            }
            tokio::select! {
                changed = activity.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            activity.borrow_and_update();
        }
    });
    sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(Duration::from_secs(15))
        .with_retry_duration(Duration::from_secs(2))
}

/// Parses a JSON body. Handlers take the raw bytes and call this after checking credentials,
/// so an unauthenticated caller learns nothing from validation errors.
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Parses an optional JSON body: empty means the defaults; anything else must be valid.
/// (actix's `Option<Json<T>>` would silently turn a malformed body into `None`.)
pub(crate) fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Every client error leaves as JSON, including those raised by actix itself (unknown method,
/// body over the limit, ...). Pages that render their own HTML keep it.
fn json_client_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let keep = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if keep {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = res
        .response()
        .error()
        .map(|e| e.to_string())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("client error")
                .to_owned()
        });
    let code = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ => "client_error",
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let (req, res) = res.into_parts();
    let mut res = res.set_body(body).map_into_boxed_body();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body(),
    ))
}

async fn healthz(services: web::Data<Services>) -> HttpResponse {
    let store_ok = services.store.outbox_len().await;
    let dead_letters = services.store.dead_letter_count().await.unwrap_or(0);
    let clickhouse_ok = services
        .clickhouse
        .client()
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .is_ok();
    let body = serde_json::json!({
        "status": if store_ok.is_ok() { "ok" } else { "degraded" },
        "store": if store_ok.is_ok() { "ok" } else { "unavailable" },
        "clickhouse": if clickhouse_ok { "ok" } else { "unavailable" },
        "outbox_backlog": store_ok.unwrap_or(0),
        "event_dead_letters": dead_letters,
    });
    // The store is what acknowledgements depend on; ClickHouse being down is degraded, not down.
    if body["store"] == "ok" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
