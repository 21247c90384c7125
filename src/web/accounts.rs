//! The accounts API: users and their roles, API tokens per user, password changes, and the
//! audit log (admins read it; every handler that changes a ticket or a setting writes to it
//! through [`audit`]).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::ApiError;
use crate::model::{EmailAddress, Password, Team, User, UserId, UserRole};
use crate::services::{Services, hash_token, new_token};
use crate::store::{AuditEntry, AuditQuery, NewAgent, NewUser, TokenInfo, UserUpdate};

/// Registers the routes (full paths: the `/api/v1` scope of `api` would swallow a second scope).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/users", web::post().to(create_user))
        .route("/api/v1/users", web::get().to(list_users))
        .route("/api/v1/users/{id}", web::patch().to(update_user))
        .route("/api/v1/users/{id}/password", web::put().to(set_password))
        .route(
            "/api/v1/users/{id}/tokens",
            web::post().to(create_token_for),
        )
        .route("/api/v1/me", web::get().to(me))
        .route("/api/v1/me/password", web::put().to(change_my_password))
        .route("/api/v1/me/tokens", web::get().to(my_tokens))
        .route("/api/v1/me/tokens", web::post().to(create_my_token))
        .route("/api/v1/me/tokens/{id}", web::delete().to(revoke_my_token))
        .route("/api/v1/audit", web::get().to(audit_log));
}

/// Writes one line of the audit log. A failure to write it is logged, not returned: the action
/// it records has already happened.
pub async fn audit(
    services: &Services,
    caller: &Caller,
    action: &str,
    target_kind: &str,
    target_id: &str,
    detail: serde_json::Value,
) {
    let entry = AuditEntry {
        actor_id: caller.user,
        actor: caller.audit_name(services).await,
        action: action.to_owned(),
        target_kind: target_kind.to_owned(),
        target_id: target_id.to_owned(),
        detail,
    };
    if let Err(e) = services.store.record_audit(entry).await {
        tracing::error!(error = %crate::telemetry::error_chain(&e), action, "could not write the audit log");
    }
}

/// Adds an agent (and so their user), tells the router, and sets their password if given.
pub(super) async fn add_agent(
    services: &Services,
    agent: NewAgent,
    password_hash: Option<String>,
) -> Result<User, ApiError> {
    let agent = services.store.create_agent(agent).await?;
    services.router.agent_changed(agent.id).await?;
    let id: UserId = agent.id.into();
    if let Some(hash) = password_hash {
        services.store.set_password(id, hash).await?;
    }
    Ok(services.store.user(id).await?)
}

/// The caller's own user; the configured admin token belongs to nobody.
fn own_user(caller: &Caller) -> Result<UserId, ApiError> {
    caller
        .user
        .ok_or_else(|| ApiError::Forbidden("this token belongs to no user".into()))
}

fn parse_user_id(raw: &str) -> Result<UserId, ApiError> {
    Ok(raw.parse::<UserId>()?)
}

fn teams(raw: Option<Vec<String>>) -> Result<Vec<Team>, ApiError> {
    Ok(raw
        .unwrap_or_default()
        .iter()
        .map(|t| Team::parse(t))
        .collect::<Result<_, _>>()?)
}

async fn hashed(password: &Password) -> Result<String, ApiError> {
    crate::accounts::hash_password(password)
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserIn {
    email: String,
    name: String,
    role: String,
    password: Option<String>,
    /// Agents: the teams they work in; managers: the teams they oversee.
    teams: Option<Vec<String>>,
    /// Agents only.
    skills: Option<Vec<String>>,
    /// Agents only.
    max_concurrent: Option<u32>,
}

async fn create_user(
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let body: UserIn = super::json_body(&body)?;
    let email = EmailAddress::parse(&body.email)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 200 bytes without control characters".into(),
        ));
    }
    let role: UserRole = body.role.parse()?;
    let password = body.password.as_deref().map(Password::parse).transpose()?;
    let hash = match &password {
        Some(p) => Some(hashed(p).await?),
        None => None,
    };
    if role != UserRole::Agent && (body.skills.is_some() || body.max_concurrent.is_some()) {
        return Err(ApiError::BadRequest(
            "skills and max_concurrent are for agents".into(),
        ));
    }
    let user = match role {
        UserRole::Agent => {
            let agent = NewAgent {
                name,
                email,
                skills: body
                    .skills
                    .unwrap_or_default()
                    .iter()
                    .map(|s| crate::model::Skill::parse(s))
                    .collect::<Result<_, _>>()?,
                teams: teams(body.teams)?,
                max_concurrent: body.max_concurrent.unwrap_or(3).min(1000),
                capacity: Default::default(),
                hours: None,
            };
            add_agent(&services, agent, hash).await?
        }
        _ => {
            services
                .store
                .create_user(NewUser {
                    email,
                    name,
                    role,
                    teams: teams(body.teams)?,
                    password_hash: hash,
                })
                .await?
        }
    };
    audit(
        &services,
        &caller,
        "user.create",
        "user",
        &user.id.to_string(),
        serde_json::json!({"role": user.role, "email": user.email}),
    )
    .await;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Serialize)]
struct UserList {
    users: Vec<User>,
}

async fn list_users(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    Ok(HttpResponse::Ok().json(UserList {
        users: services.store.list_users().await?,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    name: Option<String>,
    teams: Option<Vec<String>>,
    disabled: Option<bool>,
}

async fn update_user(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id = parse_user_id(&path)?;
    let body: UserPatch = super::json_body(&body)?;
    if caller.user == Some(id) && body.disabled == Some(true) {
        return Err(ApiError::Conflict("you cannot disable yourself".into()));
    }
    let existing = services.store.user(id).await?;
    if existing.role == UserRole::Agent && body.teams.is_some() {
        return Err(ApiError::BadRequest(
            "an agent's teams are changed with PATCH /api/v1/agents/{id}".into(),
        ));
    }
    let update = UserUpdate {
        name: body
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        teams: body.teams.map(|t| teams(Some(t))).transpose()?,
        disabled: body.disabled,
    };
    let user = services.store.update_user(id, update).await?;
    // Cached tokens would keep a disabled user in for up to the cache's lifetime.
    services.tokens.clear();
    audit(
        &services,
        &caller,
        "user.update",
        "user",
        &id.to_string(),
        serde_json::json!({"disabled": user.disabled, "teams": user.teams}),
    )
    .await;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPasswordIn {
    password: String,
}

/// An admin sets someone's password (a new colleague, a forgotten password).
async fn set_password(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id = parse_user_id(&path)?;
    let body: NewPasswordIn = super::json_body(&body)?;
    let password = Password::parse(&body.password)?;
    services.store.user(id).await?;
    services
        .store
        .set_password(id, hashed(&password).await?)
        .await?;
    audit(
        &services,
        &caller,
        "user.password_set",
        "user",
        &id.to_string(),
        serde_json::Value::Null,
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChangeIn {
    current: String,
    new: String,
}

async fn change_my_password(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: PasswordChangeIn = super::json_body(&body)?;
    super::pages::change_password(&req, &caller, &services, &body.current, &body.new).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
struct Me {
    #[serde(flatten)]
    user: User,
}

async fn me(caller: Caller, services: web::Data<Services>) -> Result<HttpResponse, ApiError> {
    let id = caller
        .user
        .ok_or_else(|| ApiError::NotFound("user (this token belongs to nobody)"))?;
    Ok(HttpResponse::Ok().json(Me {
        user: services.store.user(id).await?,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    label: Option<String>,
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The token, shown once.
    token: String,
}

async fn issue_token(
    services: &Services,
    caller: &Caller,
    user: UserId,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let body: TokenIn = super::optional_json(body)?;
    let label = body
        .label
        .map(|l| l.trim().chars().take(100).collect::<String>())
        .filter(|l| !l.is_empty() && !l.chars().any(char::is_control))
        .unwrap_or_else(|| "api token".into());
    let token = new_token("baton");
    let info = services
        .store
        .insert_user_token(&hash_token(&token), user, &label)
        .await?;
    audit(
        services,
        caller,
        "token.create",
        "user",
        &user.to_string(),
        serde_json::json!({"token_id": info.id, "label": label}),
    )
    .await;
    Ok(HttpResponse::Created().json(CreatedToken { info, token }))
}

async fn create_my_token(
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let user = own_user(&caller)?;
    issue_token(&services, &caller, user, &body).await
}

async fn create_token_for(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let user = parse_user_id(&path)?;
    services.store.user(user).await?;
    issue_token(&services, &caller, user, &body).await
}

#[derive(Serialize)]
struct TokenList {
    tokens: Vec<TokenInfo>,
}

async fn my_tokens(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let user = own_user(&caller)?;
    Ok(HttpResponse::Ok().json(TokenList {
        tokens: services.store.user_tokens(user).await?,
    }))
}

async fn revoke_my_token(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = own_user(&caller)?;
    let id = path.into_inner();
    if id.len() > 64 {
        return Err(ApiError::NotFound("token"));
    }
    let hash = services
        .store
        .revoke_token(user, &id)
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    services.tokens.forget(&hash);
    audit(
        &services,
        &caller,
        "token.revoke",
        "user",
        &user.to_string(),
        serde_json::json!({"token_id": id}),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct AuditQueryIn {
    target_kind: Option<String>,
    target_id: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn audit_log(
    caller: Caller,
    services: web::Data<Services>,
    query: web::Query<AuditQueryIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let q = query.into_inner();
    let target = match (q.target_kind, q.target_id) {
        (Some(k), Some(i)) => Some((k, i)),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "target_kind and target_id go together".into(),
            ));
        }
    };
    let entries = services
        .store
        .audit_log(AuditQuery {
            target,
            before: q.before,
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "entries": entries })))
}
