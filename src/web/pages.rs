//! Server-rendered pages: the demo page with the chat widget, sign-in and sign-out, and the
//! account page where people change their password (the dashboard is in `dashboard`).

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::auth::{self, Caller};
use super::error::ApiError;
use crate::model::{EmailAddress, Password};
use crate::services::{Services, hash_token};

/// Registers the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/account", web::get().to(account))
        .route("/account/password", web::post().to(change_password_form));
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
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only same-site paths, so the login form cannot be used to redirect elsewhere. Empty when
/// none was asked for (the user's role then decides where they land).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => String::new(),
    }
}

async fn login_form(query: web::Query<NextQuery>) -> impl Responder {
    LoginPage {
        next: safe_next(query.next.as_deref()),
        email: String::new(),
        error: None,
    }
}

#[derive(Deserialize)]
struct LoginIn {
    email: String,
    password: String,
    next: Option<String>,
}

/// The login page again, with an error and a status.
fn login_failed(
    req: &HttpRequest,
    next: String,
    email: String,
    error: &str,
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    let page = LoginPage {
        next,
        email,
        error: Some(error.into()),
    };
    let mut response = page.respond_to(req).map_into_boxed_body();
    *response.status_mut() = status;
    response
}

async fn login(
    req: HttpRequest,
    services: web::Data<Services>,
    form: web::Form<LoginIn>,
) -> Result<HttpResponse, ApiError> {
    use actix_web::http::StatusCode;
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    let typed = form.email.trim().chars().take(320).collect::<String>();
    if let Err(ApiError::TooManyRequests(secs)) = services.limits.login_attempt(&req, &typed) {
        let mut r = login_failed(
            &req,
            next,
            typed,
            &format!("Too many attempts. Try again in {secs} seconds."),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from(secs),
        );
        return Ok(r);
    }
    let (Ok(email), Ok(password)) = (
        EmailAddress::parse(&typed),
        Password::for_login(&form.password),
    ) else {
        return Ok(login_failed(
            &req,
            next,
            typed,
            "That email and password do not match.",
            StatusCode::UNAUTHORIZED,
        ));
    };
    let user = crate::accounts::sign_in(&services.store, &email, &password)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(user) = user else {
        tracing::info!("failed sign-in");
        return Ok(login_failed(
            &req,
            next,
            typed,
            "That email and password do not match.",
            StatusCode::UNAUTHORIZED,
        ));
    };
    let cookie = auth::open_session(&req, &services, &user).await?;
    tracing::info!(user = %user.id, "signed in");
    // Agents land in their workspace, managers and admins on the dashboard, unless the login
    // page was asked for somewhere else.
    let next = match (next.is_empty(), user.role) {
        (true, crate::model::UserRole::Agent) => "/workspace".to_owned(),
        (true, _) => "/dashboard".to_owned(),
        (false, _) => next,
    };
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header(("Location", next))
        .finish())
}

/// Ends the session (the CSRF guard checked the form's token first).
async fn logout(req: HttpRequest, services: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    if let Some(cookie) = req.cookie(auth::SESSION_COOKIE) {
        services
            .store
            .delete_session(&hash_token(cookie.value()))
            .await?;
    }
    Ok(HttpResponse::SeeOther()
        .cookie(auth::removal_cookie())
        .insert_header(("Location", "/login"))
        .finish())
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    name: String,
    email: String,
    role: &'static str,
    csrf: String,
    message: Option<String>,
    error: Option<String>,
}

async fn account_page(
    caller: &Caller,
    services: &Services,
    message: Option<String>,
    error: Option<String>,
) -> Result<AccountPage, ApiError> {
    let user_id = caller.user.ok_or(ApiError::Unauthorized)?;
    let user = services.store.user(user_id).await?;
    Ok(AccountPage {
        name: user.name,
        email: user.email.as_str().to_owned(),
        role: caller.role_name(),
        csrf: caller.csrf.clone().unwrap_or_default(),
        message,
        error,
    })
}

async fn account(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Ok(caller) = caller else {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/login?next=/account"))
            .finish());
    };
    let page = account_page(&caller, &services, None, None).await?;
    Ok(page.respond_to(&req).map_into_boxed_body())
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

/// Changes the caller's password after checking the current one; every session, this one
/// included, ends, and the caller signs in again.
pub(super) async fn change_password(
    req: &HttpRequest,
    caller: &Caller,
    services: &Services,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    let user_id = caller.user.ok_or_else(|| {
        ApiError::Forbidden("this token belongs to no user and has no password".into())
    })?;
    let user = services.store.user(user_id).await?;
    services.limits.login_attempt(req, user.email.as_str())?;
    let current = Password::for_login(current)?;
    let new = Password::parse(new)?;
    let ok = crate::accounts::sign_in(&services.store, &user.email, &current)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .is_some();
    if !ok {
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    let hash = crate::accounts::hash_password(&new)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    services.store.set_password(user_id, hash).await?;
    super::accounts::audit(
        services,
        caller,
        "user.password",
        "user",
        &user_id.to_string(),
        serde_json::Value::Null,
    )
    .await;
    Ok(())
}

async fn change_password_form(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, ApiError> {
    match change_password(&req, &caller, &services, &form.current, &form.new).await {
        Ok(()) => Ok(HttpResponse::SeeOther()
            .cookie(auth::removal_cookie())
            .insert_header(("Location", "/login?next=/account"))
            .finish()),
        Err(ApiError::Forbidden(why) | ApiError::BadRequest(why)) => {
            let page = account_page(&caller, &services, None, Some(why)).await?;
            let mut r = page.respond_to(&req).map_into_boxed_body();
            *r.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_only_redirects_within_the_site() {
        assert_eq!(safe_next(Some("/dashboard?x=1")), "/dashboard?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "");
        assert_eq!(safe_next(Some("https://evil.example")), "");
        assert_eq!(safe_next(None), "");
    }
}
