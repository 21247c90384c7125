//! Who is calling: bearer tokens for machines and agents, a cookie for the dashboard pages.
//! Tokens are looked up by their SHA-256 hash; the store never holds a usable token.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::error::ApiError;
use crate::model::AgentId;
use crate::services::{Services, hash_token};
use crate::store::Role;

/// The cookie that carries a token for browser pages.
pub const SESSION_COOKIE: &str = "baton_session";

/// Recently verified token hashes, so a busy integration does not cost a database read per
/// request. Entries live [`TokenCache::TTL`]; a revoked token stops working within that time.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Role, Instant)>>,
}

impl TokenCache {
    /// How long a verified token is trusted without asking the store again.
    pub const TTL: Duration = Duration::from_secs(30);
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, hash: &str) -> Option<Role> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(role, _)| *role)
    }

    fn put(&self, hash: String, role: Role) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (role, Instant::now()));
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// What they may do.
    pub role: Role,
}

impl Caller {
    /// Fails unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Agent(_) | Role::Ingest => {
                Err(ApiError::Forbidden("this needs an admin token".into()))
            }
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
            // Never reached: the extractor turns ingest tokens away.
            (Role::Ingest, _) => Err(ApiError::Forbidden("an ingest token cannot act".into())),
        }
    }
}

/// The bearer token of a request, from `Authorization: Bearer` or the session cookie.
pub fn presented_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// Looks the presented token up (cache first) and returns its role.
async fn authenticate(
    token: Option<String>,
    services: Option<web::Data<Services>>,
) -> Result<Role, ApiError> {
    let token = token
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or(ApiError::Unauthorized)?;
    let services =
        services.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("services missing")))?;
    let hash = hash_token(&token);
    if let Some(role) = services.tokens.get(&hash) {
        return Ok(role);
    }
    let role = services
        .store
        .role_for_token(&hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    services.tokens.put(hash, role);
    Ok(role)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = presented_token(req);
        let services = req.app_data::<web::Data<Services>>().cloned();
        Box::pin(async move {
            match authenticate(token, services).await? {
                // A mail server's token delivers mail and nothing else.
                Role::Ingest => Err(ApiError::Forbidden(
                    "this token may only deliver mail to /ingest/email".into(),
                )),
                role => Ok(Caller { role }),
            }
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
        let token = presented_token(req);
        let services = req.app_data::<web::Data<Services>>().cloned();
        Box::pin(async move {
            match authenticate(token, services).await? {
                Role::Admin | Role::Ingest => Ok(Ingester),
                Role::Agent(_) => Err(ApiError::Forbidden(
                    "delivering mail needs an admin or ingest token".into(),
                )),
            }
        })
    }
}
