//! The managers' dashboard: server-rendered (askama), live over server-sent events (htmx's SSE
//! extension), charts as SVG rendered here, working with JavaScript off (Refresh link). Every
//! figure comes from the same report code as `/api/v1/reports/*`; the page shows metadata only,
//! never what customers wrote.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;

use super::auth::Caller;
use super::charts;
use super::error::ApiError;
use crate::analytics::reports::{
    self, Breakdown, Drill, Filter, FilterQuery, HandoffRow, Live, SlaTargets, Summary,
};
use crate::model::{ChannelKind, HandoffReason, Priority, Timestamp};
use crate::services::Services;

/// Registers the dashboard's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(dashboard))
        .route("/dashboard/report", web::get().to(report_fragment))
        .route("/dashboard/live", web::get().to(live_stream))
        .route("/dashboard/handoffs", web::get().to(drill_page));
}

/// `1234` -> `1.2 s`, `95000` -> `1 min 35 s`.
pub fn format_duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    } else {
        let m = (ms / 60_000.0).round() as u64;
        format!("{} h {} min", m / 60, m % 60)
    }
}

fn fmt_ms(ms: &u64) -> String {
    format_duration_ms(*ms as f64)
}

fn fmt_opt_ms(ms: &Option<u64>) -> String {
    ms.map_or_else(|| "–".into(), |ms| format_duration_ms(ms as f64))
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.2}"))
}

fn help(metric: &str) -> &'static str {
    reports::HELP
        .iter()
        .find(|(m, _)| *m == metric)
        .map_or("", |(_, h)| h)
}

fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

// --- the filter form -------------------------------------------------------------------------

/// The filter form's state and choices.
struct FormView {
    range: String,
    from: String,
    to: String,
    channel: String,
    team: String,
    agent: String,
    reason: String,
    priority: String,
    ranges: Vec<(&'static str, &'static str)>,
    channels: Vec<&'static str>,
    agents: Vec<(String, String)>,
    reasons: Vec<&'static str>,
    priorities: Vec<&'static str>,
}

impl FormView {
    async fn new(q: &FilterQuery, services: &Services) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let agents = services
            .store
            .list_agents()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.id.to_string(), a.name))
            .collect();
        Self {
            range: q.range.clone().unwrap_or_else(|| "today".into()),
            from: text(&q.from),
            to: text(&q.to),
            channel: text(&q.channel),
            team: text(&q.team),
            agent: text(&q.agent),
            reason: text(&q.reason),
            priority: text(&q.priority),
            ranges: vec![
                ("1h", "last hour"),
                ("today", "today"),
                ("7d", "last 7 days"),
                ("30d", "last 30 days"),
                ("custom", "from … to"),
            ],
            channels: ChannelKind::ALL.iter().map(|c| c.as_str()).collect(),
            agents,
            reasons: [
                HandoffReason::CustomerRequest,
                HandoffReason::BotRequest,
                HandoffReason::BotFailure,
                HandoffReason::BotLowConfidence,
                HandoffReason::BotFallback,
                HandoffReason::Frustration,
                HandoffReason::Rule,
                HandoffReason::Manual,
            ]
            .iter()
            .map(|r| r.as_str())
            .collect(),
            priorities: [
                Priority::Urgent,
                Priority::High,
                Priority::Normal,
                Priority::Low,
            ]
            .iter()
            .map(|p| p.as_str())
            .collect(),
        }
    }
}

// --- the live panel --------------------------------------------------------------------------

/// The live panel: queues, agents and recent requests now.
struct LiveView {
    live: Option<Arc<Live>>,
    queued_total: u64,
    oldest_wait: String,
    as_of: String,
    /// False for the page's first render, before the stream has sent anything.
    streamed: bool,
}

impl LiveView {
    fn new(live: Option<Arc<Live>>, streamed: bool) -> Self {
        let (queued_total, oldest) = live.as_ref().map_or((0, None), |l| {
            (
                l.queues.iter().map(|q| q.waiting).sum(),
                l.queues.iter().filter_map(|q| q.oldest_wait_ms).max(),
            )
        });
        Self {
            as_of: live.as_ref().map(|l| utc(l.now_ms)).unwrap_or_default(),
            live,
            queued_total,
            oldest_wait: fmt_opt_ms(&oldest),
            streamed,
        }
    }
}

#[derive(Template)]
#[template(path = "live.html")]
struct LiveFragment {
    l: LiveView,
}

/// The live view straight from the store and ClickHouse, bypassing the report cache, so the
/// stream is as fresh as the last write.
async fn live_now(services: &Services) -> Option<Arc<Live>> {
    match reports::live(
        &services.clickhouse,
        services.store.as_ref(),
        Timestamp::now().as_millis(),
    )
    .await
    {
        Ok(live) => Some(Arc::new(live)),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "dashboard: live view failed");
            None
        }
    }
}

/// The live panel as a server-sent event stream: rendered on connect and again after every
/// routing change (a handoff queued, offered, accepted, closed; an agent's presence),
/// coalesced to one render per 250 ms, so it is fresh within a second; a keep-alive every 15 s.
async fn live_stream(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<impl Responder, ApiError> {
    caller.require_manager()?;
    let for_render = services.clone();
    // Recent-request counts move with time, not only with routing: at least every 30 s.
    Ok(super::live_html(
        services,
        "live",
        Duration::from_secs(30),
        move || {
            let services = for_render.clone();
            async move {
                LiveFragment {
                    l: LiveView::new(live_now(&services).await, true),
                }
                .render()
                .ok()
            }
        },
    ))
}

// --- the report ------------------------------------------------------------------------------

/// One figure on the page.
struct Card {
    metric: &'static str,
    title: &'static str,
    value: String,
    detail: String,
    help: &'static str,
    drill: Option<&'static str>,
}

/// One breakdown table.
struct Table {
    dimension: &'static str,
    rows: Vec<Breakdown>,
}

/// The report part of the page.
struct ReportView {
    qs: String,
    period: String,
    summary: Option<Arc<Summary>>,
    error: Option<String>,
    cards: Vec<Card>,
    tables: Vec<Table>,
    reasons_chart: Option<String>,
    heatmap: Option<String>,
}

impl ReportView {
    fn failed(qs: String, error: String) -> Self {
        Self {
            qs,
            period: String::new(),
            summary: None,
            error: Some(error),
            cards: Vec::new(),
            tables: Vec::new(),
            reasons_chart: None,
            heatmap: None,
        }
    }

    fn new(qs: String, f: &Filter, s: Arc<Summary>) -> Self {
        let t = &s.totals;
        let pct = |p: &reports::Percentiles| {
            format!(
                "p90 {} · p99 {} · over {}",
                fmt_opt_ms(&p.p90_ms),
                fmt_opt_ms(&p.p99_ms),
                p.count
            )
        };
        let card = |metric, title, value: String, detail: String, drill| Card {
            metric,
            title,
            value,
            detail,
            help: help(metric),
            drill,
        };
        let cards = vec![
            card(
                "requested",
                "Handoffs requested",
                t.requested.to_string(),
                format!("{} waiting, {} open", t.waiting, t.open),
                Some("requested"),
            ),
            card(
                "containment_rate",
                "Bot containment",
                percent(s.containment.containment_rate),
                format!(
                    "{} of {} conversations without a person; handoff rate {}",
                    s.containment.contained,
                    s.containment.conversations,
                    percent(s.containment.handoff_rate)
                ),
                None,
            ),
            card(
                "wait_to_assignment",
                "Wait to assignment (p50)",
                fmt_opt_ms(&t.wait_to_assignment.p50_ms),
                pct(&t.wait_to_assignment),
                Some("assigned"),
            ),
            card(
                "wait_to_first_reply",
                "Wait to first reply (p50)",
                fmt_opt_ms(&t.wait_to_first_reply.p50_ms),
                pct(&t.wait_to_first_reply),
                None,
            ),
            card(
                "time_to_accept",
                "Time to accept (p50)",
                fmt_opt_ms(&t.time_to_accept.p50_ms),
                pct(&t.time_to_accept),
                None,
            ),
            card(
                "handle_time",
                "Handle time (p50)",
                fmt_opt_ms(&t.handle_time.p50_ms),
                pct(&t.handle_time),
                None,
            ),
            card(
                "resolution_rate",
                "Resolved within handoff",
                percent(t.resolution_rate),
                format!(
                    "{} resolved, {} released, {} abandoned",
                    t.resolved, t.released, t.abandoned
                ),
                Some("resolved"),
            ),
            card(
                "abandoned",
                "Abandoned while waiting",
                t.abandoned.to_string(),
                "customers who left before a person came".into(),
                Some("abandoned"),
            ),
            card(
                "reoffered",
                "Re-offered",
                t.reoffered.to_string(),
                format!(
                    "{} declines, {} offers timed out, {} offers in all",
                    t.declines, t.offer_timeouts, t.offers
                ),
                Some("reoffered"),
            ),
            card(
                "transfers_per_handoff",
                "Transfers per handoff",
                ratio(t.transfers_per_handoff),
                format!("{} transfers of {} handoffs", t.transfers, t.transferred),
                Some("transferred"),
            ),
            card(
                "rehandoffs",
                "Re-handoffs within 24 h",
                t.rehandoffs.to_string(),
                format!("{} released back to the bot", t.released),
                Some("rehandoff"),
            ),
            card(
                "sla_breaches",
                "SLA breaches",
                (t.sla_assignment_breaches + t.sla_first_reply_breaches).to_string(),
                format!(
                    "{} assignment (target {} s), {} first reply (target {} s)",
                    t.sla_assignment_breaches,
                    s.sla.assignment_secs,
                    t.sla_first_reply_breaches,
                    s.sla.first_reply_secs
                ),
                Some("sla_breached"),
            ),
        ];
        let tables = vec![
            Table {
                dimension: "channel",
                rows: s.by_channel.clone(),
            },
            Table {
                dimension: "team",
                rows: s.by_team.clone(),
            },
            Table {
                dimension: "agent",
                rows: s.by_agent.clone(),
            },
            Table {
                dimension: "reason",
                rows: s.by_reason.clone(),
            },
            Table {
                dimension: "priority",
                rows: s.by_priority.clone(),
            },
        ]
        .into_iter()
        .filter(|t| !t.rows.is_empty())
        .collect();
        Self {
            period: format!("{} to {} UTC", utc(f.from_ms), utc(f.to_ms)),
            reasons_chart: reasons_chart(&s),
            heatmap: charts::weekday_hour_heatmap(
                "",
                &s.heatmap
                    .iter()
                    .map(|c| (c.weekday, c.hour, c.count))
                    .collect::<Vec<_>>(),
            ),
            cards,
            tables,
            summary: Some(s),
            error: None,
            qs,
        }
    }
}

/// Handoffs by reason per time bucket as stacked bars.
fn reasons_chart(s: &Summary) -> Option<String> {
    let mut buckets: Vec<u64> = s
        .reasons_over_time
        .iter()
        .map(|b| b.bucket_start_ms)
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    let mut reasons: Vec<&str> = s
        .reasons_over_time
        .iter()
        .map(|b| b.reason.as_str())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let series = reasons
        .iter()
        .map(|r| {
            let values = buckets
                .iter()
                .map(|b| {
                    s.reasons_over_time
                        .iter()
                        .filter(|x| x.bucket_start_ms == *b && x.reason == *r)
                        .map(|x| x.count as f32)
                        .sum()
                })
                .collect();
            ((*r).to_owned(), values)
        })
        .collect();
    let labels = buckets
        .iter()
        .map(|b| utc(*b as i64).split_at(5).1.to_owned())
        .collect();
    charts::stacked_bars("", labels, series)
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    /// The session's CSRF token, for the logout form.
    csrf: String,
    qs: String,
    form: FormView,
    l: LiveView,
    r: ReportView,
}

#[derive(Template, WebTemplate)]
#[template(path = "report.html")]
struct ReportFragment {
    r: ReportView,
}

/// The report for a filter, through the cache (so many open dashboards cost ClickHouse one
/// query per filter every few seconds).
async fn load_report(services: &Services, q: &FilterQuery) -> Result<ReportView, ApiError> {
    let f = Filter::from_query(q, Timestamp::now().as_millis())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let qs = f.query.to_query_string();
    let sla = SlaTargets::from_settings(&services.settings);
    Ok(
        match services
            .reports
            .summary(&services.clickhouse, services.store.as_ref(), &f, &sla)
            .await
        {
            Ok(s) => ReportView::new(qs, &f, s),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "dashboard: ClickHouse query failed");
                ReportView::failed(
                    qs,
                    "Analytics are unavailable right now (ClickHouse did not answer). Events are kept and will appear when it is back.".into(),
                )
            }
        },
    )
}

fn to_login(req: &HttpRequest) -> HttpResponse {
    let next = match req.query_string() {
        "" => req.path().to_owned(),
        q => format!("{}?{q}", req.path()),
    };
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/login?next={}", urlencoding(&next))))
        .finish()
}

/// Percent-encodes a path and query for a `next=` parameter.
fn urlencoding(s: &str) -> String {
    // Paths keep their slashes; everything else outside the unreserved set is encoded.
    const SET: &percent_encoding::AsciiSet =
        &crate::analytics::reports::UNRESERVED_COMPLEMENT.remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

async fn dashboard(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = match caller {
        Ok(c) => c,
        Err(_) => return Ok(to_login(&req)),
    };
    caller.require_manager()?;
    // The report, the form's agents and the live panel at once: they wait on different
    // queries.
    let (r, form, live) = tokio::join!(
        load_report(&services, &query),
        FormView::new(&query, &services),
        live_now(&services)
    );
    let r = r?;
    let page = DashboardPage {
        csrf: caller.csrf.clone().unwrap_or_default(),
        qs: r.qs.clone(),
        form,
        l: LiveView::new(live, false),
        r,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

async fn report_fragment(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
    query: web::Query<FilterQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    let fragment = ReportFragment {
        r: load_report(&services, &query).await?,
    };
    Ok(fragment.respond_to(&req).map_into_boxed_body())
}

#[derive(serde::Deserialize)]
struct DrillQuery {
    drill: String,
    #[serde(flatten)]
    filter: FilterQuery,
}

#[derive(Template, WebTemplate)]
#[template(path = "handoffs.html")]
struct DrillPage {
    drill: &'static str,
    period: String,
    qs: String,
    rows: Arc<Vec<HandoffRow>>,
}

/// The handoffs behind a figure, each linking to its ticket.
async fn drill_page(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
    query: web::Query<DrillQuery>,
) -> Result<HttpResponse, ApiError> {
    match caller {
        Ok(c) => c.require_manager()?,
        Err(_) => return Ok(to_login(&req)),
    }
    let drill: Drill = query
        .drill
        .parse()
        .map_err(|_| ApiError::BadRequest("unknown drill".into()))?;
    let f = Filter::from_query(&query.filter, Timestamp::now().as_millis())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sla = SlaTargets::from_settings(&services.settings);
    let rows = services
        .reports
        .handoffs(&services.clickhouse, &f, &sla, drill)
        .await
        .map_err(|e| {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "dashboard: drill-down failed");
            ApiError::Unavailable(anyhow::anyhow!("analytics are unavailable right now"))
        })?;
    let page = DrillPage {
        drill: drill.as_str(),
        period: format!("{} to {} UTC", utc(f.from_ms), utc(f.to_ms)),
        qs: f.query.to_query_string(),
        rows,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(format_duration_ms(250.0), "250 ms");
        assert_eq!(format_duration_ms(1_250.0), "1.2 s");
        assert_eq!(format_duration_ms(95_000.0), "1 min 35 s");
        assert_eq!(format_duration_ms(5_400_000.0), "1 h 30 min");
    }

    #[test]
    fn the_login_redirect_keeps_the_filters() {
        assert_eq!(
            urlencoding("/dashboard?range=7d&channel=api"),
            "/dashboard%3Frange%3D7d%26channel%3Dapi"
        );
    }
}
