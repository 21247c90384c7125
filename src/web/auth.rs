//! Who is calling and what they may see.
//!
//! Machines and scripts send a bearer token (`Authorization: Bearer`); people sign in at
//! `/login` and carry a session cookie. Tokens and session ids are stored as SHA-256 hashes
//! only, so the store never holds a usable credential.
//!
//! A cookie is sent by the browser on its own, so every state-changing request made with one
//! must also echo the session's CSRF token ([`csrf_guard`]): in the `X-CSRF-Token` header
//! (htmx sends it on every request of a page) or, for a plain form, in its `csrf` field. A
//! bearer token is never sent implicitly and needs no CSRF token.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, dev::Payload, web};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::model::{AgentId, Handoff, Team, Timestamp, User, UserId, UserRole};
use crate::services::{Services, hash_token, new_token};
use crate::store::{NewSession, Principal, Role, Session};

/// The cookie that carries a session id.
pub const SESSION_COOKIE: &str = "baton_session";
/// The header that carries the CSRF token on htmx and script requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries it on plain forms.
pub const CSRF_FIELD: &str = "csrf";

/// A session ends after this long without use...
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// ...and at the latest this long after sign-in, used or not.
pub const SESSION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// A session's last use is written at most this often (not on every request).
const SESSION_TOUCH_EVERY: Duration = Duration::from_secs(300);

/// Recently verified token hashes, so a busy integration does not cost a database read per
/// request. Entries live [`TokenCache::TTL`]; a token revoked on another instance stops working
/// within that time (on this one, at once: revoking drops it here).
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    /// How long a verified token is trusted without asking the store again.
    pub const TTL: Duration = Duration::from_secs(30);
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(p, _)| *p)
    }

    fn put(&self, hash: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (principal, Instant::now()));
    }

    /// Forgets a token (revoked) so it stops working at once.
    pub fn forget(&self, hash: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(hash);
    }

    /// Forgets every token (a user was disabled or changed role).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.clear();
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What they may do.
    pub role: Role,
    /// Who they are, unless a token that belongs to nobody (the configured admin token).
    pub user: Option<UserId>,
    /// Their session's CSRF token when they came with the session cookie (pages render it).
    pub csrf: Option<String>,
}

impl Caller {
    /// Fails unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::Forbidden("this needs the admin role".into())),
        }
    }

    /// Fails unless the caller is a manager or an admin (the dashboard and reports).
    pub fn require_manager(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Manager(_) => Ok(()),
            _ => Err(ApiError::Forbidden("this needs the manager role".into())),
        }
    }

    /// The agent acting: the caller themselves, or for an admin the agent named in the body.
    pub fn acting_agent(&self, named: Option<AgentId>) -> Result<Option<AgentId>, ApiError> {
        match (self.role, named) {
            (Role::Agent(me), None) => Ok(Some(me)),
            (Role::Agent(me), Some(other)) if other == me => Ok(Some(me)),
            (Role::Agent(_), Some(_)) => Err(ApiError::Forbidden(
                "an agent can only act as themselves".into(),
            )),
            (Role::Admin, named) => Ok(named),
            (Role::Manager(_), _) => Err(ApiError::Forbidden(
                "managers watch tickets; agents and admins act on them".into(),
            )),
            // Never reached: the extractor turns ingest tokens away.
            (Role::Ingest, _) => Err(ApiError::Forbidden("an ingest token cannot act".into())),
        }
    }

    /// The role's name, for pages.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Admin => "admin",
            Role::Manager(_) => "manager",
            Role::Agent(_) => "agent",
            Role::Ingest => "ingest",
        }
    }

    /// Whose tickets this caller sees.
    pub async fn scope(&self, services: &Services) -> Result<Scope, ApiError> {
        Ok(match self.role {
            Role::Admin => Scope::All,
            Role::Manager(user) => Scope::Teams {
                teams: services.store.user(user).await?.teams,
                agent: None,
            },
            Role::Agent(me) => Scope::Teams {
                teams: services.store.agent(me).await?.teams,
                agent: Some(me),
            },
            Role::Ingest => Scope::Teams {
                teams: Vec::new(),
                agent: None,
            },
        })
    }

    /// How the audit log names this caller.
    pub async fn audit_name(&self, services: &Services) -> String {
        match self.user {
            Some(user) => match services.store.user(user).await {
                Ok(u) => u.email.as_str().to_owned(),
                Err(_) => user.to_string(),
            },
            None => "admin token".into(),
        }
    }
}

/// Whose tickets a caller sees: an admin all of them; a manager those of the teams they
/// manage and of the general queue; an agent those of their teams and their own. Every agent
/// serves the general queue (no team), so they see its tickets while nobody owns them; once a
/// colleague owns one, it is that colleague's conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// These teams' tickets, the general queue's, and the agent's own.
    Teams {
        /// The teams.
        teams: Vec<Team>,
        /// The agent whose own tickets are in scope wherever they are.
        agent: Option<AgentId>,
    },
}

impl Scope {
    /// Whether the ticket is in scope.
    pub fn sees(&self, handoff: &Handoff) -> bool {
        match self {
            Scope::All => true,
            Scope::Teams { teams, agent } => {
                (agent.is_some() && handoff.assigned_agent_id == *agent)
                    || match handoff.team.as_deref() {
                        None => agent.is_none() || handoff.assigned_agent_id.is_none(),
                        Some(team) => teams.iter().any(|t| t.as_str() == team),
                    }
            }
        }
    }
}

/// The bearer token of a request, from `Authorization: Bearer`.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Looks a bearer token up (cache first).
async fn authenticate_token(token: &str, services: &Services) -> Result<Principal, ApiError> {
    if token.is_empty() || token.len() > 256 {
        return Err(ApiError::Unauthorized);
    }
    let hash = hash_token(token);
    if let Some(p) = services.tokens.get(&hash) {
        return Ok(p);
    }
    let principal = services
        .store
        .role_for_token(&hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    services.tokens.put(hash, principal);
    Ok(principal)
}

/// A user's principal: what their role lets them do.
pub fn principal_of(user: &User) -> Principal {
    let role = match user.role {
        UserRole::Agent => Role::Agent(user.id.into()),
        UserRole::Manager => Role::Manager(user.id),
        UserRole::Admin => Role::Admin,
    };
    Principal {
        role,
        user: Some(user.id),
    }
}

/// The live session named by the request's cookie, if any; extends it when due.
pub async fn current_session(
    req: &HttpRequest,
    services: &Services,
) -> Result<Option<(String, Session)>, ApiError> {
    if let Some(found) = req.extensions().get::<ResolvedSession>() {
        return Ok(Some((found.0.clone(), found.1.clone())));
    }
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let value = cookie.value();
    if value.is_empty() || value.len() > 256 {
        return Ok(None);
    }
    let id_hash = hash_token(value);
    let Some(session) = services.store.session(&id_hash).await? else {
        return Ok(None);
    };
    let now = Timestamp::now();
    if now.millis_since(session.last_seen_at) > SESSION_TOUCH_EVERY.as_millis() as i64 {
        services
            .store
            .touch_session(&id_hash, session_expiry(session.created_at, now))
            .await?;
    }
    req.extensions_mut()
        .insert(ResolvedSession(id_hash.clone(), session.clone()));
    Ok(Some((id_hash, session)))
}

/// A session resolved once per request (by the CSRF guard), for the extractor to reuse.
#[derive(Clone)]
struct ResolvedSession(String, Session);

/// When a session used at `now` ends: idle timeout, capped by the absolute lifetime.
fn session_expiry(created: Timestamp, now: Timestamp) -> Timestamp {
    let idle = now.as_millis() + SESSION_IDLE.as_millis() as i64;
    let max = created.as_millis() + SESSION_MAX.as_millis() as i64;
    Timestamp::from_millis(idle.min(max))
}

/// Opens a session for `user` and returns the cookie to set.
pub async fn open_session(
    req: &HttpRequest,
    services: &Services,
    user: &User,
) -> Result<Cookie<'static>, ApiError> {
    let value = new_token("bs");
    let now = Timestamp::now();
    services
        .store
        .create_session(NewSession {
            id_hash: hash_token(&value),
            user: user.id,
            csrf_token: new_token("csrf"),
            expires_at: session_expiry(now, now),
        })
        .await?;
    Ok(session_cookie(req, value))
}

/// The session cookie: HttpOnly, SameSite=Strict, Secure when served over TLS.
fn session_cookie(req: &HttpRequest, value: String) -> Cookie<'static> {
    let secure = req.connection_info().scheme() == "https";
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_MAX.as_secs() as i64,
        ))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn removal_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    cookie.make_removal();
    cookie
}

async fn caller_of(req: HttpRequest) -> Result<Caller, ApiError> {
    let services = req
        .app_data::<web::Data<Services>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("services missing")))?;
    if req.headers().contains_key(header::AUTHORIZATION) {
        let token = bearer_token(&req).ok_or(ApiError::Unauthorized)?;
        let p = authenticate_token(&token, &services).await?;
        return Ok(Caller {
            role: p.role,
            user: p.user,
            csrf: None,
        });
    }
    let (_, session) = current_session(&req, &services)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let p = principal_of(&session.user);
    Ok(Caller {
        role: p.role,
        user: p.user,
        csrf: Some(session.csrf_token),
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = caller_of(req).await?;
            if caller.role == Role::Ingest {
                // A mail server's token delivers mail and nothing else.
                return Err(ApiError::Forbidden(
                    "this token may only deliver mail to /ingest/email".into(),
                ));
            }
            Ok(caller)
        })
    }
}

/// A caller allowed to deliver inbound mail: an admin or an ingest token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingester;

impl FromRequest for Ingester {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let services = req
                .app_data::<web::Data<Services>>()
                .cloned()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("services missing")))?;
            let token = bearer_token(&req).ok_or(ApiError::Unauthorized)?;
            match authenticate_token(&token, &services).await?.role {
                Role::Admin | Role::Ingest => Ok(Ingester),
                _ => Err(ApiError::Forbidden(
                    "delivering mail needs an admin or ingest token".into(),
                )),
            }
        })
    }
}

/// Paths whose state-changing requests never use the session: the public widget, platform
/// webhooks, mail ingest, and the login form itself (no session yet).
fn csrf_exempt(path: &str) -> bool {
    path == "/login"
        || path.starts_with("/widget/")
        || path.starts_with("/webhooks/")
        || path.starts_with("/ingest/")
}

/// Refuses a state-changing request made with the session cookie unless it echoes the
/// session's CSRF token (header or form field) and, when the browser names its origin, comes
/// from this site.
pub async fn csrf_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe
        || csrf_exempt(req.path())
        || req.headers().contains_key(header::AUTHORIZATION)
        || req.cookie(SESSION_COOKIE).is_none()
    {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let services = req.app_data::<web::Data<Services>>().cloned();
    let session = match services {
        Some(s) => current_session(req.request(), &s).await,
        None => Ok(None),
    };
    let session = match session {
        Ok(Some((_, session))) => session,
        // No live session: the handler answers 401 (or sends the browser to the login page).
        Ok(None) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Err(e) => return Ok(req.into_response(e.error_response())),
    };
    if !same_origin(req.request()) {
        let e = ApiError::Forbidden("cross-site request refused".into());
        return Ok(req.into_response(e.error_response()));
    }
    let presented = match req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) => Some(v.to_owned()),
        None => form_field(&mut req, CSRF_FIELD).await,
    };
    let valid =
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf_token.as_bytes())));
    if !valid {
        let e = ApiError::Forbidden(
            "missing or wrong CSRF token (reload the page and try again)".into(),
        );
        return Ok(req.into_response(e.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Whether the browser's `Origin` (when it sent one) is this site.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let info = req.connection_info();
    origin
        .to_str()
        .is_ok_and(|o| o == format!("{}://{}", info.scheme(), info.host()))
}

/// Reads a field of a url-encoded form body and puts the body back for the handler.
async fn form_field(req: &mut ServiceRequest, name: &str) -> Option<String> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return None;
    }
    // Bounded by the app's body limit (`max_body_bytes`), like every other body.
    let body = req.extract::<web::Bytes>().await.ok()?;
    let value = form_urlencoded::parse(&body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    req.set_payload(actix_web::dev::Payload::from(body));
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, HandoffId, HandoffReason, HandoffStatus, Priority};

    fn ticket(team: Option<&str>, agent: Option<AgentId>) -> Handoff {
        Handoff {
            id: HandoffId::new(),
            conversation_id: ConversationId::new(),
            reason: HandoffReason::Manual,
            reason_detail: None,
            summary: None,
            priority: Priority::Normal,
            required_skills: vec![],
            status: HandoffStatus::Queued,
            assigned_agent_id: agent,
            requested_at: Timestamp::from_millis(0),
            assigned_at: None,
            accepted_at: None,
            first_reply_at: None,
            closed_at: None,
            team: team.map(str::to_owned),
            rule: None,
            intent: None,
            fields: Default::default(),
            language: None,
            offer_deadline: None,
        }
    }

    #[test]
    fn an_agent_sees_their_teams_the_general_queue_and_their_own_tickets_only() {
        let me = AgentId::new();
        let scope = Scope::Teams {
            teams: vec![Team::parse("billing").unwrap()],
            agent: Some(me),
        };
        assert!(scope.sees(&ticket(Some("billing"), None)));
        assert!(scope.sees(&ticket(None, None)));
        assert!(scope.sees(&ticket(Some("sales"), Some(me))));
        assert!(!scope.sees(&ticket(Some("sales"), None)));
        assert!(!scope.sees(&ticket(Some("sales"), Some(AgentId::new()))));
        assert!(
            !scope.sees(&ticket(None, Some(AgentId::new()))),
            "a colleague's ticket from the general queue"
        );
        assert!(Scope::All.sees(&ticket(Some("sales"), None)));
    }

    #[test]
    fn a_manager_sees_the_general_queue_but_no_other_team() {
        let scope = Scope::Teams {
            teams: vec![],
            agent: None,
        };
        assert!(!scope.sees(&ticket(Some("sales"), None)));
        assert!(scope.sees(&ticket(None, Some(AgentId::new()))));
    }

    #[test]
    fn a_session_ends_after_twelve_idle_hours_or_seven_days_after_sign_in() {
        let start = Timestamp::from_millis(0);
        assert_eq!(
            session_expiry(start, start).as_millis(),
            SESSION_IDLE.as_millis() as i64
        );
        let late = Timestamp::from_millis(SESSION_MAX.as_millis() as i64 - 1000);
        assert_eq!(
            session_expiry(start, late).as_millis(),
            SESSION_MAX.as_millis() as i64
        );
    }

    #[test]
    fn the_widget_webhooks_and_login_need_no_csrf_token_and_the_api_does() {
        assert!(csrf_exempt("/login"));
        assert!(csrf_exempt("/widget/conversations"));
        assert!(csrf_exempt("/webhooks/meta"));
        assert!(!csrf_exempt("/api/v1/handoffs/x/accept"));
        assert!(!csrf_exempt("/logout"));
    }
}
