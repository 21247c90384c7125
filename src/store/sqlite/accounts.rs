//! Accounts: users, browser sessions, users' API tokens and the audit log.

use sqlx::{Row, SqliteConnection};

use super::{corrupt, parse_col};
use crate::model::{EmailAddress, Timestamp, User, UserId, UserRole};
use crate::store::rows::{row_user, teams_json};
use crate::store::{
    AuditEntry, AuditQuery, AuditRecord, LoginCandidate, NewSession, NewUser, Principal, Role,
    Session, StoreError, TokenInfo, UserUpdate,
};

/// The user columns, with an agent's teams read from their agent row (where they are edited).
/// A macro so queries stay literals (`concat!`), as sqlx wants.
macro_rules! user_columns {
    () => {
        "u.id, u.email, u.name, u.role, u.password_hash, u.disabled_at, u.created_at, \
         CASE WHEN u.role = 'agent' THEN coalesce(a.teams, '[]') ELSE u.teams END AS teams"
    };
}

/// Adds an agent's user, in the transaction that adds the agent.
pub(super) async fn insert_agent_user(
    conn: &mut SqliteConnection,
    id: UserId,
    email: &EmailAddress,
    name: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "INSERT INTO users (id, email, name, role, created_at) VALUES (?, ?, ?, 'agent', ?)",
    )
    .bind(id.to_string())
    .bind(email.as_str().to_lowercase())
    .bind(name)
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await;
    unique(result, "a user with this email already exists")
}

fn unique<T>(result: Result<T, sqlx::Error>, what: &str) -> Result<(), StoreError> {
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict(what.into()))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

pub(super) async fn load_user(conn: &mut SqliteConnection, id: UserId) -> Result<User, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u LEFT JOIN agents a ON a.id = u.id WHERE u.id = ?"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("user"))?;
    row_user(&row)
}

pub(super) async fn create_user(
    conn: &mut SqliteConnection,
    user: NewUser,
) -> Result<User, StoreError> {
    if user.role == UserRole::Agent {
        return Err(StoreError::Conflict(
            "agents are added as agents (they need skills and capacity)".into(),
        ));
    }
    let id = UserId::new();
    let result = sqlx::query(
        "INSERT INTO users (id, email, name, role, teams, password_hash, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(user.email.as_str().to_lowercase())
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(teams_json(&user.teams))
    .bind(user.password_hash)
    .bind(Timestamp::now().as_millis())
    .execute(&mut *conn)
    .await;
    unique(result, "a user with this email already exists")?;
    load_user(conn, id).await
}

pub(super) async fn list_users(conn: &mut SqliteConnection) -> Result<Vec<User>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u LEFT JOIN agents a ON a.id = u.id ORDER BY u.created_at, u.id"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(row_user)
    .collect()
}

pub(super) async fn login_candidate(
    conn: &mut SqliteConnection,
    email: &EmailAddress,
) -> Result<Option<LoginCandidate>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u LEFT JOIN agents a ON a.id = u.id WHERE u.email = ?"
    ))
    .bind(email.as_str().to_lowercase())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(LoginCandidate {
            user: row_user(&row)?,
            password_hash: row.try_get("password_hash")?,
        })
    })
    .transpose()
}

pub(super) async fn set_password(
    conn: &mut SqliteConnection,
    id: UserId,
    hash: String,
) -> Result<(), StoreError> {
    let changed = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(hash)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound("user"));
    }
    // A new password ends every session opened with the old one.
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn update_user(
    conn: &mut SqliteConnection,
    id: UserId,
    update: UserUpdate,
) -> Result<User, StoreError> {
    let user = load_user(conn, id).await?;
    let name = update.name.unwrap_or(user.name);
    let teams = update.teams.map(|t| teams_json(&t));
    let disabled_at = match update.disabled {
        Some(true) if !user.disabled => Some(Some(Timestamp::now().as_millis())),
        Some(false) => Some(None),
        _ => None,
    };
    sqlx::query(
        "UPDATE users SET name = ?, teams = coalesce(?, teams),
                          disabled_at = CASE WHEN ? THEN ? ELSE disabled_at END
         WHERE id = ?",
    )
    .bind(&name)
    .bind(teams)
    .bind(disabled_at.is_some())
    .bind(disabled_at.flatten())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if update.disabled == Some(true) {
        sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    load_user(conn, id).await
}

pub(super) async fn create_session(
    conn: &mut SqliteConnection,
    session: NewSession,
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    // Expired sessions are swept here rather than by a timer: logins are rare, sessions few.
    sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(session.id_hash)
    .bind(session.user.to_string())
    .bind(session.csrf_token)
    .bind(now)
    .bind(now)
    .bind(session.expires_at.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn session(
    conn: &mut SqliteConnection,
    id_hash: &str,
) -> Result<Option<Session>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_columns!(),
        ", s.csrf_token, s.created_at AS s_created, s.last_seen_at, s.expires_at
         FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN agents a ON a.id = u.id
         WHERE s.id_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL"
    ))
    .bind(id_hash)
    .bind(Timestamp::now().as_millis())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Session {
            user: row_user(&row)?,
            csrf_token: row.try_get("csrf_token")?,
            created_at: Timestamp::from_millis(row.try_get("s_created")?),
            last_seen_at: Timestamp::from_millis(row.try_get("last_seen_at")?),
            expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        })
    })
    .transpose()
}

pub(super) async fn touch_session(
    conn: &mut SqliteConnection,
    id_hash: &str,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?")
        .bind(Timestamp::now().as_millis())
        .bind(expires_at.as_millis())
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn delete_session(
    conn: &mut SqliteConnection,
    id_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn insert_user_token(
    conn: &mut SqliteConnection,
    token_hash: &str,
    user: UserId,
    label: &str,
) -> Result<TokenInfo, StoreError> {
    let role: String = sqlx::query("SELECT role FROM users WHERE id = ?")
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("user"))?
        .try_get("role")?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = Timestamp::now();
    // `role` and `agent_id` keep the columns' old meaning for readers of the table; the user's
    // current role is what counts (see `role_for_token`).
    let agent = (role == "agent").then(|| user.to_string());
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, role, agent_id, label, created_at, user_id)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(token_hash)
    .bind(&role)
    .bind(agent)
    .bind(label)
    .bind(now.as_millis())
    .bind(user.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(TokenInfo {
        id,
        label: label.to_owned(),
        created_at: now,
    })
}

pub(super) async fn user_tokens(
    conn: &mut SqliteConnection,
    user: UserId,
) -> Result<Vec<TokenInfo>, StoreError> {
    sqlx::query(
        "SELECT id, coalesce(label, '') AS label, created_at FROM api_tokens
         WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
    )
    .bind(user.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(TokenInfo {
            id: r.try_get("id")?,
            label: r.try_get("label")?,
            created_at: Timestamp::from_millis(r.try_get("created_at")?),
        })
    })
    .collect()
}

pub(super) async fn revoke_token(
    conn: &mut SqliteConnection,
    user: UserId,
    id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "UPDATE api_tokens SET revoked_at = ?
         WHERE id = ? AND user_id = ? AND revoked_at IS NULL RETURNING token_hash",
    )
    .bind(Timestamp::now().as_millis())
    .bind(id)
    .bind(user.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get("token_hash").map_err(Into::into))
        .transpose()
}

pub(super) async fn role_for_token(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<Principal>, StoreError> {
    let row = sqlx::query(
        "SELECT t.role, t.agent_id, t.user_id, u.role AS user_role, u.disabled_at
         FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ? AND t.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user: Option<String> = row.try_get("user_id")?;
    if let Some(user) = user {
        let user: UserId = user.parse().map_err(corrupt)?;
        if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
            return Ok(None);
        }
        let role: UserRole = parse_col(&row, "user_role")?;
        let role = match role {
            UserRole::Agent => Role::Agent(user.into()),
            UserRole::Manager => Role::Manager(user),
            UserRole::Admin => Role::Admin,
        };
        return Ok(Some(Principal {
            role,
            user: Some(user),
        }));
    }
    let role: String = row.try_get("role")?;
    let role = match role.as_str() {
        "admin" => Role::Admin,
        "agent" => Role::Agent(parse_col(&row, "agent_id")?),
        "ingest" => Role::Ingest,
        other => return Err(StoreError::Corrupt(format!("unknown token role {other:?}"))),
    };
    Ok(Some(Principal { role, user: None }))
}

pub(super) async fn record_audit(
    conn: &mut SqliteConnection,
    entry: AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor, action, target_kind, target_id, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(Timestamp::now().as_millis())
    .bind(entry.actor_id.map(|u| u.to_string()))
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target_kind)
    .bind(entry.target_id)
    .bind(entry.detail.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn audit_log(
    conn: &mut SqliteConnection,
    query: AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (kind, target) = query.target.unzip();
    sqlx::query(
        "SELECT id, at, actor_id, actor, action, target_kind, target_id, detail FROM audit_log
         WHERE (? IS NULL OR (target_kind = ? AND target_id = ?)) AND id < ?
         ORDER BY id DESC LIMIT ?",
    )
    .bind(kind.clone())
    .bind(kind)
    .bind(target)
    .bind(query.before.unwrap_or(i64::MAX))
    .bind(query.limit.clamp(1, 1000) as i64)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let actor_id: Option<String> = r.try_get("actor_id")?;
        let detail: String = r.try_get("detail")?;
        Ok(AuditRecord {
            id: r.try_get("id")?,
            at: Timestamp::from_millis(r.try_get("at")?),
            actor_id: actor_id.map(|a| a.parse()).transpose().map_err(corrupt)?,
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            target_kind: r.try_get("target_kind")?,
            target_id: r.try_get("target_id")?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
    })
    .collect()
}
