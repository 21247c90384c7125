//! Server-rendered pages: the demo page with the chat widget, the dashboard, and login.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::auth::{Caller, SESSION_COOKIE};
use super::error::ApiError;
use crate::analytics::reports::{self, Today};
use crate::services::{Services, hash_token};

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/dashboard", web::get().to(dashboard))
        .route("/dashboard/summary", web::get().to(summary_fragment))
        .route("/dashboard/live", web::get().to(live_stream))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
struct IndexPage;

async fn index() -> impl Responder {
    IndexPage
}

/// The summary as the page shows it.
struct SummaryView {
    summary: Option<Today>,
    error: Option<String>,
    outbox_backlog: u64,
}

impl SummaryView {
    fn median_wait(&self) -> String {
        match self
            .summary
            .as_ref()
            .and_then(|s| s.median_wait_to_assign_ms)
        {
            Some(ms) => format_duration_ms(ms),
            None => "–".into(),
        }
    }
}

/// `1234.0` -> `1.2 s`, `95000` -> `1 min 35 s`.
pub fn format_duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    view: SummaryView,
    live: LiveView,
    /// False: the first render, before the live stream has sent anything.
    streamed: bool,
}

/// One queue on the live panel.
struct QueueLine {
    team: String,
    waiting: usize,
    oldest: String,
}

/// One agent on the live panel.
struct AgentLine {
    id: String,
    name: String,
    presence: String,
    load: usize,
    capacity: u32,
}

/// What is happening now, straight from the store (no ClickHouse round trip, so it is as
/// fresh as the last write).
struct LiveView {
    queued_total: usize,
    oldest_wait_ms: Option<i64>,
    online: usize,
    away: usize,
    offline: usize,
    queues: Vec<QueueLine>,
    agents: Vec<AgentLine>,
    as_of: String,
}

impl LiveView {
    fn oldest_wait(&self) -> String {
        self.oldest_wait_ms
            .map_or_else(|| "–".into(), |ms| format_duration_ms(ms as f64))
    }
}

#[derive(Template)]
#[template(path = "live.html")]
struct LiveFragment<'a> {
    live: &'a LiveView,
    streamed: bool,
}

async fn load_live(services: &Services) -> Result<LiveView, ApiError> {
    use crate::model::{HandoffStatus, Presence, Timestamp};
    use std::collections::BTreeMap;
    let now = Timestamp::now();
    let queued = services
        .store
        .list_handoffs(Some(HandoffStatus::Queued), 10_000)
        .await?;
    let mut by_team: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for h in &queued {
        let entry = by_team
            .entry(h.team.clone().unwrap_or_else(|| "general".into()))
            .or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(now.millis_since(h.requested_at));
    }
    let mut load: BTreeMap<crate::model::AgentId, usize> = BTreeMap::new();
    for status in [HandoffStatus::Assigned, HandoffStatus::Accepted] {
        for h in services.store.list_handoffs(Some(status), 10_000).await? {
            if let Some(a) = h.assigned_agent_id {
                *load.entry(a).or_default() += 1;
            }
        }
    }
    let agents = services.store.list_agents().await?;
    let count = |p: Presence| agents.iter().filter(|a| a.presence == p).count();
    Ok(LiveView {
        queued_total: queued.len(),
        oldest_wait_ms: by_team.values().map(|(_, w)| *w).max(),
        online: count(Presence::Online),
        away: count(Presence::Away),
        offline: count(Presence::Offline),
        queues: by_team
            .into_iter()
            .map(|(team, (waiting, oldest))| QueueLine {
                team,
                waiting,
                oldest: format_duration_ms(oldest as f64),
            })
            .collect(),
        agents: agents
            .iter()
            .filter(|a| a.presence != Presence::Offline)
            .map(|a| AgentLine {
                id: a.id.to_string(),
                name: a.name.clone(),
                presence: a.presence.as_str().to_owned(),
                load: load.get(&a.id).copied().unwrap_or(0),
                capacity: a.max_concurrent,
            })
            .collect(),
        as_of: time::OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[hour]:[minute]:[second]"
            ))
            .unwrap_or_default(),
    })
}

/// The live panel as a server-sent event stream: the rendered panel on connect and again after
/// every routing change (a handoff queued, offered, accepted, closed; an agent's presence), at
/// most every 250 ms, so it is fresh within a second without polling; a keep-alive every 15 s.
async fn live_stream(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<impl Responder, ApiError> {
    use actix_web_lab::sse;
    caller.require_admin()?;
    let mut activity = services.router.activity();
    let (tx, rx) = tokio::sync::mpsc::channel::<sse::Event>(4);
    tokio::spawn(async move {
        loop {
            let html = match load_live(&services).await {
                Ok(live) => LiveFragment {
                    live: &live,
                    streamed: true,
                }
                .render()
                .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard: live panel failed");
                    String::new()
                }
            };
            if !html.is_empty()
                && tx
                    .send(sse::Data::new(html).event("live").into())
                    .await
                    .is_err()
            {
                return;
            }
            tokio::select! {
                changed = activity.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            // Coalesce a burst of changes into one render.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            activity.borrow_and_update();
        }
    });
    Ok(sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(std::time::Duration::from_secs(15))
        .with_retry_duration(std::time::Duration::from_secs(2)))
}

#[derive(Template, WebTemplate)]
#[template(path = "summary.html")]
struct SummaryFragment {
    view: SummaryView,
}

async fn load_summary(services: &Services) -> SummaryView {
    let outbox_backlog = services.store.outbox_len().await.unwrap_or(0);
    match reports::today(&services.clickhouse).await {
        Ok(summary) => SummaryView {
            summary: Some(summary),
            error: None,
            outbox_backlog,
        },
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&e), "dashboard: ClickHouse query failed");
            SummaryView {
                summary: None,
                error: Some("Analytics are unavailable right now (ClickHouse did not answer). Events are kept and will appear when it is back.".into()),
                outbox_backlog,
            }
        }
    }
}

fn to_login(req: &HttpRequest) -> HttpResponse {
    let next = req.path();
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/login?next={next}")))
        .finish()
}

async fn dashboard(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    match caller {
        Ok(c) => c.require_admin()?,
        Err(_) => return Ok(to_login(&req)),
    }
    let page = DashboardPage {
        view: load_summary(&services).await,
        live: load_live(&services).await?,
        streamed: false,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

async fn summary_fragment(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let fragment = SummaryFragment {
        view: load_summary(&services).await,
    };
    Ok(fragment.respond_to(&req).map_into_boxed_body())
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only same-site paths, so the login form cannot be used to redirect elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/dashboard".into(),
    }
}

async fn login_form(query: web::Query<NextQuery>) -> impl Responder {
    LoginPage {
        next: safe_next(query.next.as_deref()),
        error: None,
    }
}

#[derive(Deserialize)]
struct LoginIn {
    token: String,
    next: Option<String>,
}

async fn login(
    req: HttpRequest,
    services: web::Data<Services>,
    form: web::Form<LoginIn>,
) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    let valid = !token.is_empty()
        && token.len() <= 256
        && services
            .store
            .role_for_token(&hash_token(token))
            .await?
            // A mail server's ingest token opens no pages.
            .is_some_and(|role| role != crate::store::Role::Ingest);
    if !valid {
        let page = LoginPage {
            next,
            error: Some("That token is not valid.".into()),
        };
        let mut response = page.respond_to(&req).map_into_boxed_body();
        *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let secure = req.connection_info().scheme() == "https";
    let cookie = Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish();
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header(("Location", next))
        .finish())
}

async fn logout() -> HttpResponse {
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header(("Location", "/login"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(format_duration_ms(250.0), "250 ms");
        assert_eq!(format_duration_ms(1_250.0), "1.2 s");
        assert_eq!(format_duration_ms(95_000.0), "1 min 35 s");
    }

    #[test]
    fn login_only_redirects_within_the_site() {
        assert_eq!(safe_next(Some("/dashboard?x=1")), "/dashboard?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/dashboard");
        assert_eq!(safe_next(Some("https://evil.example")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }
}
