//! The admin page: people (list and add) and the audit log. Everything else an admin sets
//! (skills, capacity, queues, business hours, escalation rules) goes through the API.

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::workspace::{Nav, nav};
use crate::model::{EmailAddress, Password, Team, UserRole};
use crate::services::Services;
use crate::store::{AuditQuery, NewAgent, NewUser};

/// Registers the admin pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(page))
        .route("/admin/users", web::post().to(add_user));
}

struct UserLine {
    id: String,
    name: String,
    email: String,
    role: &'static str,
    teams: String,
    has_password: bool,
    disabled: bool,
}

struct AuditLine {
    at: String,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin.html")]
struct AdminPage {
    csrf: String,
    nav: Nav,
    notice: Option<String>,
    users: Vec<UserLine>,
    audit: Vec<AuditLine>,
    older: Option<i64>,
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<i64>,
    notice: Option<String>,
}

const AUDIT_PAGE: u32 = 100;

async fn page(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let Ok(caller) = caller else {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/login?next=/admin"))
            .finish());
    };
    caller.require_admin()?;
    let users = services
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserLine {
            id: u.id.to_string(),
            name: u.name,
            email: u.email.as_str().to_owned(),
            role: u.role.as_str(),
            teams: u
                .teams
                .iter()
                .map(Team::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            has_password: u.has_password,
            disabled: u.disabled,
        })
        .collect();
    let entries = services
        .store
        .audit_log(AuditQuery {
            target: None,
            before: query.before,
            limit: AUDIT_PAGE,
        })
        .await?;
    let older = (entries.len() == AUDIT_PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let audit = entries
        .into_iter()
        .map(|e| AuditLine {
            at: e
                .at
                .to_rfc3339()
                .get(..19)
                .unwrap_or_default()
                .replace('T', " "),
            actor: e.actor,
            action: e.action,
            target: format!("{} {}", e.target_kind, e.target_id),
            detail: if e.detail.is_null() {
                String::new()
            } else {
                e.detail.to_string()
            },
        })
        .collect();
    let page = AdminPage {
        csrf: caller.csrf.clone().unwrap_or_default(),
        nav: nav(&services, &caller).await?,
        notice: query.notice.clone().map(|n| n.chars().take(300).collect()),
        users,
        audit,
        older,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

#[derive(Deserialize)]
struct UserForm {
    name: String,
    email: String,
    role: String,
    teams: Option<String>,
    password: String,
}

fn back(notice: &str) -> HttpResponse {
    let n: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/admin?notice={n}")))
        .finish()
}

async fn add_user(
    caller: Caller,
    services: web::Data<Services>,
    form: web::Form<UserForm>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let form = form.into_inner();
    let created = async {
        let name = form.name.trim().to_owned();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest("a name is 1 to 200 characters".into()));
        }
        let email = EmailAddress::parse(&form.email)?;
        let role: UserRole = form.role.parse()?;
        let teams = form
            .teams
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Team::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let password = Password::parse(&form.password)?;
        let hash = crate::accounts::hash_password(&password)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let user = if role == UserRole::Agent {
            let agent = NewAgent {
                name,
                email,
                skills: Vec::new(),
                teams,
                max_concurrent: 3,
                capacity: Default::default(),
                hours: None,
            };
            super::accounts::add_agent(&services, agent, Some(hash)).await?
        } else {
            services
                .store
                .create_user(NewUser {
                    email,
                    name,
                    role,
                    teams,
                    password_hash: Some(hash),
                })
                .await?
        };
        Ok::<_, ApiError>(user)
    }
    .await;
    match created {
        Ok(user) => {
            super::accounts::audit(
                &services,
                &caller,
                "user.create",
                "user",
                &user.id.to_string(),
                serde_json::json!({"role": user.role, "email": user.email}),
            )
            .await;
            Ok(back(&format!("Added {}.", user.email.as_str())))
        }
        Err(ApiError::BadRequest(m) | ApiError::Conflict(m)) => Ok(back(&m)),
        Err(e) => Err(e),
    }
}
