//! `GET /metrics`: the event pipeline's health in Prometheus' text format, for scrapers and
//! alerts (a growing backlog, dead letters, failing shipments). No auth, like `/healthz`: the
//! figures are counts, nothing about customers.

use std::fmt::Write;

use actix_web::{HttpResponse, web};

use crate::services::Services;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition. A figure the store cannot give right now is left out rather than reported
/// as 0, and `baton_store_up` says why.
pub(super) async fn metrics(services: web::Data<Services>) -> HttpResponse {
    let backlog = services.store.outbox_len().await.ok();
    let dead_letters = services.store.dead_letter_count().await.ok();
    let stats = services.shipper.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<u64>| {
        if let Some(v) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        }
    };
    metric(
        "baton_store_up",
        "gauge",
        "Whether the store answered (1) or not (0).",
        Some(u64::from(backlog.is_some() && dead_letters.is_some())),
    );
    metric(
        "baton_outbox_backlog",
        "gauge",
        "Handoff events waiting in the outbox to ship to ClickHouse.",
        backlog,
    );
    metric(
        "baton_event_dead_letters",
        "gauge",
        "Handoff events ClickHouse refused as bad data, set aside in the store.",
        dead_letters,
    );
    metric(
        "baton_events_shipped_total",
        "counter",
        "Handoff events ClickHouse confirmed since start (a re-shipped event counts again).",
        Some(stats.shipped()),
    );
    metric(
        "baton_ship_failures_total",
        "counter",
        "Event shipments that failed since start and were retried.",
        Some(stats.failures()),
    );
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out)
}
