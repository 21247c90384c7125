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
    let (inserts, insert_seconds) = stats.inserts();
    let _ = writeln!(
        out,
        "# HELP baton_ship_insert_seconds Time ClickHouse took to confirm each INSERT of events, from the end of its rows to the answer.\n# TYPE baton_ship_insert_seconds summary\nbaton_ship_insert_seconds_sum {insert_seconds}\nbaton_ship_insert_seconds_count {inserts}"
    );
    let _ = writeln!(
        out,
        "# HELP baton_ship_insert_last_seconds Time ClickHouse took to confirm the latest INSERT of events.\n# TYPE baton_ship_insert_last_seconds gauge\nbaton_ship_insert_last_seconds {}",
        stats.last_insert_seconds()
    );
    let counters = services.dispatcher.counters().snapshot();
    for (name, help, pick) in [
        (
            "baton_messages_ingested_total",
            "Inbound messages stored since start, per channel (redeliveries not counted).",
            0,
        ),
        (
            "baton_replies_sent_total",
            "Outbound messages the channel accepted since start, per channel.",
            1,
        ),
        (
            "baton_send_failures_total",
            "Outbound send attempts that failed since start (retried or given up), per channel.",
            2,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (channel, ingested, sent, failed) in &counters {
            let v = [ingested, sent, failed][pick];
            let _ = writeln!(out, "{name}{{channel=\"{}\"}} {v}", channel.as_str());
        }
    }
    // Queue depth from the store (what the router persists), per team.
    if let Ok(queued) = services
        .store
        .list_handoffs(Some(crate::model::HandoffStatus::Queued), 10_000)
        .await
    {
        let now = crate::model::Timestamp::now();
        let mut teams: std::collections::BTreeMap<String, (u64, i64)> = Default::default();
        for h in &queued {
            let e = teams
                .entry(h.team.clone().unwrap_or_else(|| "general".into()))
                .or_default();
            e.0 += 1;
            e.1 = e.1.max(now.millis_since(h.requested_at));
        }
        let _ = writeln!(
            out,
            "# HELP baton_queue_depth Tickets waiting for an agent, per team.\n# TYPE baton_queue_depth gauge"
        );
        for (team, (n, _)) in &teams {
            let _ = writeln!(out, "baton_queue_depth{{team=\"{team}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP baton_queue_oldest_wait_seconds How long the longest-waiting ticket has waited, per team.\n# TYPE baton_queue_oldest_wait_seconds gauge"
        );
        for (team, (_, oldest)) in &teams {
            let _ = writeln!(
                out,
                "baton_queue_oldest_wait_seconds{{team=\"{team}\"}} {:.3}",
                *oldest as f64 / 1000.0
            );
        }
    }
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out)
}
