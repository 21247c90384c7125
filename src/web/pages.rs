//! Server-rendered pages: the demo page with the chat widget, and login (the dashboard is in
//! `dashboard`).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::auth::SESSION_COOKIE;
use super::error::ApiError;
use crate::services::{Services, hash_token};

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
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
    fn login_only_redirects_within_the_site() {
        assert_eq!(safe_next(Some("/dashboard?x=1")), "/dashboard?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/dashboard");
        assert_eq!(safe_next(Some("https://evil.example")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }
}
