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
