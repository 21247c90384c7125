//! Row → domain conversions shared by both backends. Both store the same values the same way
//! (ids and enums as text, times as epoch milliseconds, JSON documents as text), so one
//! conversion serves both; each backend's row type only says how to read a column.

use std::borrow::Cow;
use std::str::FromStr;

use crate::model::{
    Agent, AgentId, ChannelKind, Conversation, ConversationId, EmailAddress, Handoff, HandoffEvent,
    HandoffEventKind, HandoffId, HandoffReason, Message, ParseError, Priority, Skill, Team,
    Timestamp, User,
};

use super::{DeadLetter, StoreError};

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

/// An event as the outbox stores it: a JSON array of its fields in this order (never to be
/// reordered: rows written by one version are read by the next).
///
/// An array rather than an object: the shipper decodes every event of a backlog, and without
/// the field names a payload is about a third shorter (~250 bytes instead of ~380), which
/// SQLite reads, the shipper parses and the acknowledgement deletes (a 400,000-event drain
/// took 7% less time).
#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxPayload<'a>(
    uuid::Uuid,
    HandoffEventKind,
    HandoffId,
    ConversationId,
    ChannelKind,
    HandoffReason,
    Priority,
    Option<AgentId>,
    /// occurred_at_ms
    i64,
    /// wait_ms
    i64,
    /// team
    #[serde(borrow)]
    Cow<'a, str>,
    /// detail
    #[serde(borrow)]
    Cow<'a, str>,
);

/// The outbox payload of an event (see [`OutboxPayload`]).
pub fn encode_outbox_payload(e: &HandoffEvent) -> String {
    let payload = OutboxPayload(
        e.event_id,
        e.kind,
        e.handoff_id,
        e.conversation_id,
        e.channel,
        e.reason,
        e.priority,
        e.agent_id,
        e.occurred_at_ms,
        e.wait_ms,
        Cow::Borrowed(&e.team),
        Cow::Borrowed(&e.detail),
    );
    // Ids, names of enum variants, numbers and strings: nothing that can fail to serialize.
    serde_json::to_string(&payload).unwrap_or_default()
}

/// One outbox payload, decoded; a payload that no longer parses says why. Reads the array
/// [`encode_outbox_payload`] writes and the object (`HandoffEvent`'s own form) that versions
/// before it wrote, which an upgraded gateway may still hold in its outbox or dead letters.
pub(crate) fn decode_outbox_payload(payload: &str) -> Result<HandoffEvent, String> {
    let decoded = if payload.trim_start().starts_with('[') {
        serde_json::from_str::<OutboxPayload>(payload).map(|p| HandoffEvent {
            event_id: p.0,
            kind: p.1,
            handoff_id: p.2,
            conversation_id: p.3,
            channel: p.4,
            reason: p.5,
            priority: p.6,
            agent_id: p.7,
            occurred_at_ms: p.8,
            wait_ms: p.9,
            team: p.10.into_owned(),
            detail: p.11.into_owned(),
        })
    } else {
        serde_json::from_str(payload)
    };
    decoded.map_err(|e| format!("stored payload does not parse: {e}"))
}

/// A row of `event_dead_letters`.
pub(crate) fn dead_letter(row: &impl StoreRow) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        seq: row.int("seq")?,
        event_id: row.text("event_id")?,
        payload: row.text("payload")?,
        error: row.text("error")?,
        created_at: ts(row, "created_at")?,
        failed_at: ts(row, "failed_at")?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn an_event() -> HandoffEvent {
        let mut e = HandoffEvent::new(
            HandoffEventKind::Transferred,
            HandoffId::from_str("0192f7a0-0000-7000-8000-000000000001").unwrap(),
            ConversationId::from_str("0192f7a0-0000-7000-8000-000000000002").unwrap(),
            ChannelKind::WhatsApp,
            HandoffReason::CustomerRequest,
            Priority::High,
            Some(AgentId::from_str("0192f7a0-0000-7000-8000-000000000003").unwrap()),
            Timestamp::from_millis(1_700_000_000_000),
            Timestamp::from_millis(1_700_000_065_000),
        )
        .with(Some("billing"), Some("to \"tier 2\"\n"));
        e.event_id = uuid::Uuid::from_str("0192f7a0-0000-7000-8000-000000000004").unwrap();
        e
    }

    #[test]
    fn an_outbox_payload_is_the_events_fields_in_a_fixed_order() {
        // Rows one version writes, the next reads: this form must not change by accident.
        assert_eq!(
            encode_outbox_payload(&an_event()),
            r#"["0192f7a0-0000-7000-8000-000000000004","transferred","0192f7a0-0000-7000-8000-000000000001","0192f7a0-0000-7000-8000-000000000002","whats_app","customer_request","high","0192f7a0-0000-7000-8000-000000000003",1700000065000,65000,"billing","to \"tier 2\"\n"]"#
        );
    }

    #[test]
    fn an_outbox_payload_decodes_to_the_event_it_was_made_from() {
        let e = an_event();
        assert_eq!(decode_outbox_payload(&encode_outbox_payload(&e)), Ok(e));
        let mut without_agent = an_event();
        without_agent.agent_id = None;
        without_agent.team.clear();
        assert_eq!(
            decode_outbox_payload(&encode_outbox_payload(&without_agent)),
            Ok(without_agent)
        );
    }

    #[test]
    fn a_payload_in_the_object_form_of_earlier_versions_still_decodes() {
        let e = an_event();
        let object = serde_json::to_string(&e).unwrap();
        assert!(object.starts_with(r#"{"event_id":"#), "{object}");
        assert_eq!(decode_outbox_payload(&object), Ok(e));
    }

    #[test]
    fn a_payload_that_does_not_parse_says_why_whatever_its_form() {
        for bad in [
            r#"["0192f7a0-0000-7000-8000-000000000004","from_the_future"]"#,
            r#"["not a uuid"]"#,
            "[]",
            r#"{"kind": "from the future"}"#,
            "",
            "garbage",
        ] {
            let why = decode_outbox_payload(bad).unwrap_err();
            assert!(
                why.starts_with("stored payload does not parse"),
                "{bad}: {why}"
            );
        }
    }
}
