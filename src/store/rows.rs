//! Row → domain conversions shared by both backends. Both store the same values the same way
//! (ids and enums as text, times as epoch milliseconds, JSON documents as text), so one
//! conversion serves both; each backend's row type only says how to read a column.

use std::str::FromStr;

use crate::model::{
    Agent, AgentId, Conversation, EmailAddress, Handoff, HandoffEvent, Message, ParseError, Skill,
    Team, Timestamp, User,
};

use super::StoreError;

/// Reading a column of a row, whichever driver it came from.
pub(crate) trait StoreRow {
    /// A text column.
    fn text(&self, col: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    /// An integer column (BIGINT on PostgreSQL).
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
}

macro_rules! impl_store_row {
    ($row:ty) => {
        impl StoreRow for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, col)?)
            }
        }
    };
}

impl_store_row!(sqlx::sqlite::SqliteRow);
impl_store_row!(sqlx::postgres::PgRow);

pub(crate) fn corrupt(e: ParseError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn parse_col<T: FromStr<Err = ParseError>>(
    row: &impl StoreRow,
    col: &str,
) -> Result<T, StoreError> {
    row.text(col)?.parse().map_err(corrupt)
}

pub(crate) fn parse_opt_col<T: FromStr<Err = ParseError>>(
    row: &impl StoreRow,
    col: &str,
) -> Result<Option<T>, StoreError> {
    row.opt_text(col)?
        .map(|s| s.parse().map_err(corrupt))
        .transpose()
}

pub(crate) fn ts(row: &impl StoreRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(row.int(col)?))
}

pub(crate) fn opt_ts(row: &impl StoreRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.opt_int(col)?.map(Timestamp::from_millis))
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &impl StoreRow,
    col: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(&row.text(col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn skills_json(skills: &[Skill]) -> String {
    serde_json::to_string(&skills.iter().map(Skill::as_str).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

pub(crate) fn teams_json(teams: &[Team]) -> String {
    serde_json::to_string(&teams.iter().map(Team::as_str).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_skills(row: &impl StoreRow, col: &str) -> Result<Vec<Skill>, StoreError> {
    let raw: Vec<String> = json_col(row, col)?;
    raw.iter()
        .map(|s| Skill::parse(s).map_err(corrupt))
        .collect()
}

/// A count or size stored as BIGINT, as the `u32` the model uses.
fn small(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}

pub(crate) fn row_conversation<R: StoreRow>(row: &R) -> Result<Conversation, StoreError> {
    prefixed_conversation(row, "")
}

/// A conversation from columns named with `prefix` (joins alias them, e.g. `c_status`).
pub(crate) fn prefixed_conversation(
    row: &impl StoreRow,
    prefix: &str,
) -> Result<Conversation, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(Conversation {
        id: parse_col(row, &col("id"))?,
        channel: parse_col(row, &col("channel"))?,
        status: parse_col(row, &col("status"))?,
        customer_id: parse_col(row, &col("customer_id"))?,
        assigned_agent_id: parse_opt_col(row, &col("assigned_agent_id"))?,
        subject: row.opt_text(&col("subject"))?,
        created_at: ts(row, &col("created_at"))?,
        updated_at: ts(row, &col("updated_at"))?,
        bot_fallbacks: small(row.int(&col("bot_fallbacks"))?),
        handed_back_at: opt_ts(row, &col("handed_back_at"))?,
        handback_note: row.opt_text(&col("handback_note"))?,
    })
}

pub(crate) fn row_message<R: StoreRow>(row: &R) -> Result<Message, StoreError> {
    Ok(Message {
        id: parse_col(row, "id")?,
        conversation_id: parse_col(row, "conversation_id")?,
        direction: parse_col(row, "direction")?,
        author_kind: parse_col(row, "author_kind")?,
        agent_id: parse_opt_col(row, "agent_id")?,
        text: row.text("text")?,
        html: row.opt_text("html")?,
        attachments: json_col(row, "attachments")?,
        external_id: row.opt_text("external_id")?,
        delivery_status: parse_col(row, "delivery_status")?,
        delivery_error: row.opt_text("delivery_error")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn row_handoff<R: StoreRow>(row: &R) -> Result<Handoff, StoreError> {
    Ok(Handoff {
        id: parse_col(row, "id")?,
        conversation_id: parse_col(row, "conversation_id")?,
        reason: parse_col(row, "reason")?,
        reason_detail: row.opt_text("reason_detail")?,
        summary: row.opt_text("summary")?,
        priority: parse_col(row, "priority")?,
        required_skills: parse_skills(row, "required_skills")?
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        status: parse_col(row, "status")?,
        assigned_agent_id: parse_opt_col(row, "assigned_agent_id")?,
        requested_at: ts(row, "requested_at")?,
        assigned_at: opt_ts(row, "assigned_at")?,
        accepted_at: opt_ts(row, "accepted_at")?,
        first_reply_at: opt_ts(row, "first_reply_at")?,
        closed_at: opt_ts(row, "closed_at")?,
        team: row.opt_text("team")?,
        rule: row.opt_text("rule")?,
        intent: row.opt_text("intent")?,
        fields: json_col(row, "fields")?,
        language: row.opt_text("language")?,
        offer_deadline: opt_ts(row, "offer_deadline")?,
    })
}

pub(crate) fn row_agent<R: StoreRow>(row: &R) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: parse_col(row, "id")?,
        name: row.text("name")?,
        email: EmailAddress::parse(&row.text("email")?).map_err(corrupt)?,
        skills: parse_skills(row, "skills")?,
        teams: {
            let raw: Vec<String> = json_col(row, "teams")?;
            raw.iter()
                .map(|t| Team::parse(t).map_err(corrupt))
                .collect::<Result<_, _>>()?
        },
        max_concurrent: small(row.int("max_concurrent")?),
        presence: parse_col(row, "presence")?,
        capacity: json_col(row, "capacity")?,
        hours: row
            .opt_text("hours")?
            .map(|h| serde_json::from_str(&h))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("agent hours: {e}")))?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn row_user<R: StoreRow>(row: &R) -> Result<User, StoreError> {
    let teams: Vec<String> = json_col(row, "teams")?;
    Ok(User {
        id: parse_col(row, "id")?,
        email: EmailAddress::parse(&row.text("email")?).map_err(corrupt)?,
        name: row.text("name")?,
        role: parse_col(row, "role")?,
        teams: teams
            .iter()
            .map(|t| Team::parse(t))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?,
        has_password: row.opt_text("password_hash")?.is_some(),
        disabled: row.opt_int("disabled_at")?.is_some(),
        created_at: ts(row, "created_at")?,
    })
}

/// One outbox payload, decoded; a payload that no longer parses says why.
pub(crate) fn decode_outbox_payload(payload: &str) -> Result<HandoffEvent, String> {
    serde_json::from_str(payload).map_err(|e| format!("stored payload does not parse: {e}"))
}

/// An error text as stored with a dead letter: at most 2 KiB (ClickHouse quotes the offending
/// data, which can be large), cut on a character boundary.
pub(crate) fn truncate_error(error: &str) -> String {
    const MAX: usize = 2048;
    if error.len() <= MAX {
        return error.to_owned();
    }
    let mut end = MAX;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// Checks that `agent` (when given) owns the ticket.
pub(crate) fn check_owner(handoff: &Handoff, agent: Option<AgentId>) -> Result<(), StoreError> {
    match agent {
        Some(a) if handoff.assigned_agent_id != Some(a) => Err(StoreError::NotYours),
        _ => Ok(()),
    }
}
