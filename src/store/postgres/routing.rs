//! The router's storage: escalation rules, customer tags, the bot's streaks, ticket notes and
//! the context package an agent gets with a ticket.

use sqlx::{PgConnection, Row};

use super::{load_conversation, parse_opt_col, row_conversation, row_message, ts};
use crate::model::{ConversationId, HandoffId, Timestamp};

use crate::store::{BotSession, ConversationSummary, HandoffContext, HandoffNote, StoreError};

/// Customer messages and the start of the bot's current turn with a conversation: since the
/// conversation began, or since a person last handed it back (or closed their ticket).
pub(super) async fn bot_session(
    conn: &mut PgConnection,
    id: ConversationId,
) -> Result<BotSession, StoreError> {
    let row = sqlx::query(
        "SELECT greatest(c.created_at, coalesce(c.handed_back_at, 0),
                    coalesce((SELECT max(closed_at) FROM handoffs WHERE conversation_id = c.id), 0)) AS since
         FROM conversations c WHERE c.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("conversation"))?;
    let since: i64 = row.try_get("since")?;
    let turns: i64 = sqlx::query(
        "SELECT count(*) AS n FROM messages
         WHERE conversation_id = $1 AND direction = 'in' AND created_at >= $2",
    )
    .bind(id.to_string())
    .bind(since)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    Ok(BotSession {
        turns: turns.clamp(0, u32::MAX as i64) as u32,
        since: Timestamp::from_millis(since),
    })
}

/// The stored rules, in order; `None` when the table was never written.
pub(super) async fn escalation_rules(
    conn: &mut PgConnection,
) -> Result<Option<Vec<serde_json::Value>>, StoreError> {
    let set: i64 =
        sqlx::query("SELECT count(*) AS n FROM written_settings WHERE name = 'escalation_rules'")
            .fetch_one(&mut *conn)
            .await?
            .try_get("n")?;
    if set == 0 {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT rule FROM escalation_rules ORDER BY position")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let raw: String = r.try_get("rule")?;
            serde_json::from_str(&raw)
                .map_err(|e| StoreError::Corrupt(format!("escalation rule: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Replaces the rules in one transaction (the caller's), so readers see the old list or the
/// new one, never a mix.
pub(super) async fn set_escalation_rules(
    conn: &mut PgConnection,
    rules: &[(String, serde_json::Value)],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM escalation_rules")
        .execute(&mut *conn)
        .await?;
    for (position, (name, rule)) in rules.iter().enumerate() {
        sqlx::query("INSERT INTO escalation_rules (position, name, rule) VALUES ($1, $2, $3)")
            .bind(position as i64)
            .bind(name)
            .bind(rule.to_string())
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO written_settings (name) VALUES ('escalation_rules') ON CONFLICT DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A ticket's notes, oldest first.
pub(super) async fn notes(
    conn: &mut PgConnection,
    id: HandoffId,
) -> Result<Vec<HandoffNote>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM handoff_notes WHERE handoff_id = $1 ORDER BY created_at, id")
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(HandoffNote {
                kind: r.try_get("kind")?,
                author_agent_id: parse_opt_col(r, "author_agent_id")?,
                to_team: r.try_get("to_team")?,
                to_agent_id: parse_opt_col(r, "to_agent_id")?,
                text: r.try_get("text")?,
                created_at: ts(r, "created_at")?,
            })
        })
        .collect()
}

/// Adds a note to a ticket, in the caller's transaction.
pub(super) async fn add_note(
    conn: &mut PgConnection,
    id: HandoffId,
    note: &HandoffNote,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO handoff_notes (id, handoff_id, kind, author_agent_id, to_team, to_agent_id, text, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(id.to_string())
    .bind(&note.kind)
    .bind(note.author_agent_id.map(|a| a.to_string()))
    .bind(note.to_team.as_deref())
    .bind(note.to_agent_id.map(|a| a.to_string()))
    .bind(&note.text)
    .bind(note.created_at.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The context package: the ticket, its conversation's transcript, the customer across
/// channels with their other conversations, and the notes.
pub(super) async fn handoff_context(
    conn: &mut PgConnection,
    customer: crate::model::Customer,
    handoff: crate::model::Handoff,
) -> Result<HandoffContext, StoreError> {
    let conversation = load_conversation(&mut *conn, handoff.conversation_id).await?;
    // The latest messages, oldest first.
    let messages = sqlx::query(
        "SELECT * FROM (SELECT * FROM messages WHERE conversation_id = $1
                        ORDER BY created_at DESC, id DESC LIMIT $2) AS recent
         ORDER BY created_at, id",
    )
    .bind(conversation.id.to_string())
    .bind(HandoffContext::MAX_MESSAGES as i64)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(row_message)
    .collect::<Result<Vec<_>, _>>()?;
    let earlier = sqlx::query(
        "SELECT c.*,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count,
                (SELECT substr(m.text, 1, 200) FROM messages m WHERE m.conversation_id = c.id
                 ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS last_message
         FROM conversations c
         WHERE c.customer_id = $1 AND c.id != $2
         ORDER BY c.updated_at DESC, c.id DESC LIMIT 50",
    )
    .bind(customer.id.to_string())
    .bind(conversation.id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(ConversationSummary {
            conversation: row_conversation(r)?,
            message_count: r
                .try_get::<i64, _>("message_count")?
                .clamp(0, u32::MAX as i64) as u32,
            last_message: r.try_get("last_message")?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let notes = notes(&mut *conn, handoff.id).await?;
    Ok(HandoffContext {
        handoff,
        conversation,
        customer,
        messages,
        earlier_conversations: earlier,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// The router's state.

use super::{
    emit_event, insert_outbound, json_col, load_agent, load_handoff, load_message, opt_ts,
    parse_col, parse_skills, row_agent, row_handoff,
};
use crate::model::{AgentId, AuthorKind, ConversationStatus, HandoffEvent, HandoffStatus, Message};
use crate::store::{
    AgentRouting, AgentUpdate, OpenTicket, OutboundMessage, RoutingBatch, TicketPlacement,
    TicketRouting,
};

/// The general queue's name: tickets no rule sent to a team wait here, served by everyone.
pub const GENERAL: &str = "general";

/// Every agent and every open ticket, as the router needs them to rebuild itself.
pub(super) async fn routing_state(
    conn: &mut PgConnection,
) -> Result<(Vec<AgentRouting>, Vec<OpenTicket>), StoreError> {
    let agents = sqlx::query("SELECT * FROM agents ORDER BY id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let last: i64 = r.try_get("last_assigned_at")?;
            Ok(AgentRouting {
                agent: row_agent(r)?,
                last_offered_at: (last > 0).then(|| Timestamp::from_millis(last)),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let rows = sqlx::query(
        "SELECT h.*, c.channel AS c_channel, c.customer_id AS c_customer_id
         FROM handoffs h JOIN conversations c ON c.id = h.conversation_id
         WHERE h.status IN ('queued', 'assigned', 'accepted')
         ORDER BY h.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tickets = Vec::with_capacity(rows.len());
    for r in &rows {
        let h = row_handoff(r)?;
        let placement = match (h.status, h.assigned_agent_id) {
            (HandoffStatus::Assigned, Some(agent)) => TicketPlacement::Offered {
                agent,
                at: h.assigned_at.unwrap_or(h.requested_at),
                deadline: h.offer_deadline,
            },
            (HandoffStatus::Accepted, Some(agent)) => TicketPlacement::Owned {
                agent,
                since: h.accepted_at.unwrap_or(h.requested_at),
            },
            _ => TicketPlacement::Queued,
        };
        let sticky = match (
            parse_opt_col::<AgentId>(r, "sticky_agent_id")?,
            opt_ts(r, "sticky_at")?,
        ) {
            (Some(a), Some(at)) => Some((a, at)),
            _ => None,
        };
        tickets.push(OpenTicket {
            routing: TicketRouting {
                handoff: h.id,
                team: h.team.clone().unwrap_or_else(|| GENERAL.to_owned()),
                priority: h.priority,
                queue_entered_at: opt_ts(r, "queue_entered_at")?.unwrap_or(h.requested_at),
                overflowed: r.try_get::<bool, _>("overflowed")?,
                excluded: json_col(r, "excluded_agents")?,
                placement,
            },
            channel: parse_col(r, "c_channel")?,
            required_skills: parse_skills(r, "required_skills")?,
            requested_at: h.requested_at,
            last_agent: sticky,
        });
    }
    Ok((agents, tickets))
}

/// The conversation status that goes with a ticket placement.
fn conversation_status(p: &TicketPlacement) -> ConversationStatus {
    match p {
        TicketPlacement::Queued => ConversationStatus::Queued,
        TicketPlacement::Offered { .. } => ConversationStatus::Assigned,
        TicketPlacement::Owned { .. } => ConversationStatus::Agent,
    }
}

/// Writes one routing step in the caller's transaction.
pub(super) async fn apply_routing(
    conn: &mut PgConnection,
    batch: RoutingBatch,
    now: Timestamp,
) -> Result<Vec<Message>, StoreError> {
    if let Some(decided_at) = batch.decided_at {
        // Locked until COMMIT: the routers of all instances write one after the other, and
        // each only what it decided on the state as it is now.
        let version: i64 = sqlx::query("SELECT version FROM routing_version FOR UPDATE")
            .fetch_one(&mut *conn)
            .await?
            .try_get("version")?;
        if version != decided_at {
            return Err(StoreError::StaleRouting);
        }
        super::bump_routing(&mut *conn).await?;
    }
    for t in &batch.tickets {
        let before = super::load_handoff_locked(&mut *conn, t.handoff).await?;
        if !before.status.is_open() {
            return Err(StoreError::Conflict(format!(
                "the ticket is {} and no longer routed",
                before.status
            )));
        }
        let (status, agent, offered_at, deadline, accepted_at) = match t.placement {
            TicketPlacement::Queued => (HandoffStatus::Queued, None, None, None, None),
            TicketPlacement::Offered {
                agent,
                at,
                deadline,
            } => (
                HandoffStatus::Assigned,
                Some(agent),
                Some(at),
                deadline,
                None,
            ),
            TicketPlacement::Owned { agent, since } => (
                HandoffStatus::Accepted,
                Some(agent),
                before.assigned_at,
                None,
                Some(before.accepted_at.unwrap_or(since)),
            ),
        };
        let excluded =
            serde_json::to_string(&t.excluded).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE handoffs SET status = $1, assigned_agent_id = $2, assigned_at = $3, offer_deadline = $4,
                 accepted_at = $5, team = $6, priority = $7, priority_rank = $8, queue_entered_at = $9,
                 overflowed = $10, excluded_agents = $11
             WHERE id = $12",
        )
        .bind(status.as_str())
        .bind(agent.map(|a| a.to_string()))
        .bind(offered_at.map(|t| t.as_millis()))
        .bind(deadline.map(|t| t.as_millis()))
        .bind(accepted_at.map(|t| t.as_millis()))
        .bind((t.team != GENERAL).then_some(t.team.as_str()))
        .bind(t.priority.as_str())
        .bind(t.priority.rank())
        .bind(t.queue_entered_at.as_millis())
        .bind(t.overflowed)
        .bind(excluded)
        .bind(t.handoff.to_string())
        .execute(&mut *conn)
        .await?;
        let conversation = load_conversation(&mut *conn, before.conversation_id).await?;
        let target = conversation_status(&t.placement);
        if conversation.status != target {
            super::set_conversation_status(
                &mut *conn,
                conversation.id,
                conversation.status,
                target,
                now,
            )
            .await?;
        }
        sqlx::query("UPDATE conversations SET assigned_agent_id = $1 WHERE id = $2")
            .bind(agent.map(|a| a.to_string()))
            .bind(conversation.id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    for (agent, at) in &batch.offered_agents {
        sqlx::query(
            "UPDATE agents SET last_assigned_at = greatest(last_assigned_at, $1) WHERE id = $2",
        )
        .bind(at.as_millis())
        .bind(agent.to_string())
        .execute(&mut *conn)
        .await?;
    }
    for (handoff, note) in &batch.notes {
        add_note(&mut *conn, *handoff, note).await?;
    }
    let mut sent = Vec::with_capacity(batch.notices.len());
    for n in &batch.notices {
        // The ticket before its conversation (which storing the message touches), the order
        // every transaction takes them in: two in opposite orders would deadlock.
        sqlx::query(
            "UPDATE handoffs SET told_position = $1, told_wait_ms = $2, told_at = $3 WHERE id = $4",
        )
        .bind(n.position.map(i64::from))
        .bind(n.wait_ms)
        .bind(now.as_millis())
        .bind(n.handoff.to_string())
        .execute(&mut *conn)
        .await?;
        let h = load_handoff(&mut *conn, n.handoff).await?;
        let conversation = load_conversation(&mut *conn, h.conversation_id).await?;
        let out = OutboundMessage::text(AuthorKind::System, None, n.text.clone());
        let id = insert_outbound(&mut *conn, &conversation, &out, now).await?;
        sent.push(load_message(&mut *conn, id).await?);
    }
    // Events last: the outbox lock they take is the last lock of the transaction (see
    // `emit_event`).
    for e in &batch.events {
        let h = load_handoff(&mut *conn, e.handoff).await?;
        let channel = load_conversation(&mut *conn, h.conversation_id)
            .await?
            .channel;
        let event = HandoffEvent::new(
            e.kind,
            h.id,
            h.conversation_id,
            channel,
            h.reason,
            h.priority,
            e.agent.or(h.assigned_agent_id),
            h.requested_at,
            now,
        )
        .with(h.team.as_deref(), e.detail.as_deref());
        emit_event(&mut *conn, &event, now).await?;
    }
    Ok(sent)
}

/// Who owned the customer's most recent closed ticket, and when it closed.
pub(super) async fn last_agent_of(
    conn: &mut PgConnection,
    customer: crate::model::CustomerId,
) -> Result<Option<(AgentId, Timestamp)>, StoreError> {
    let row = sqlx::query(
        "SELECT h.assigned_agent_id, h.closed_at FROM handoffs h
         JOIN conversations c ON c.id = h.conversation_id
         WHERE c.customer_id = $1 AND h.accepted_at IS NOT NULL AND h.closed_at IS NOT NULL
               AND h.assigned_agent_id IS NOT NULL
         ORDER BY h.closed_at DESC LIMIT 1",
    )
    .bind(customer.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some((
            parse_col(&r, "assigned_agent_id")?,
            ts(&r, "closed_at")?,
        ))),
        None => Ok(None),
    }
}

/// Remembers the sticky candidate on a new ticket.
pub(super) async fn set_sticky(
    conn: &mut PgConnection,
    handoff: crate::model::HandoffId,
    last: Option<(AgentId, Timestamp)>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE handoffs SET sticky_agent_id = $1, sticky_at = $2 WHERE id = $3")
        .bind(last.map(|(a, _)| a.to_string()))
        .bind(last.map(|(_, t)| t.as_millis()))
        .bind(handoff.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Accepted tickets of a team since `since`: how many, and their median wait.
pub(super) async fn recent_acceptances(
    conn: &mut PgConnection,
    team: &str,
    since: Timestamp,
) -> Result<(u32, Option<i64>), StoreError> {
    let waits: Vec<i64> = sqlx::query(
        "SELECT accepted_at - requested_at AS w FROM handoffs
         WHERE coalesce(team, $1) = $2 AND accepted_at >= $3
         ORDER BY accepted_at DESC LIMIT 500",
    )
    .bind(GENERAL)
    .bind(team)
    .bind(since.as_millis())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get::<i64, _>("w"))
    .collect::<Result<_, _>>()?;
    let mut sorted = waits.clone();
    sorted.sort_unstable();
    let median = (!sorted.is_empty()).then(|| sorted[sorted.len() / 2].max(0));
    Ok((waits.len() as u32, median))
}

/// Queued tickets whose customer has been silent since `cutoff`.
pub(super) async fn silent_queued(
    conn: &mut PgConnection,
    cutoff: Timestamp,
    limit: u32,
) -> Result<Vec<crate::model::HandoffId>, StoreError> {
    sqlx::query(
        "SELECT h.id FROM handoffs h
         WHERE h.status = 'queued' AND h.requested_at < $1
           AND coalesce((SELECT max(m.created_at) FROM messages m
                         WHERE m.conversation_id = h.conversation_id AND m.direction = 'in'), 0) < $1
         ORDER BY h.requested_at LIMIT $2",
    )
    .bind(cutoff.as_millis())
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| parse_col(r, "id"))
    .collect()
}

/// Marks a queued ticket abandoned; the conversation goes back to the bot.
pub(super) async fn abandon(
    conn: &mut PgConnection,
    id: crate::model::HandoffId,
    now: Timestamp,
) -> Result<crate::model::Handoff, StoreError> {
    // The routing version before the ticket, as every routing write takes them.
    super::bump_routing(&mut *conn).await?;
    let h = super::load_handoff_locked(&mut *conn, id).await?;
    if h.status != HandoffStatus::Queued {
        return Err(StoreError::Conflict(format!(
            "the ticket is {}; only a waiting ticket can be abandoned",
            h.status
        )));
    }
    sqlx::query("UPDATE handoffs SET status = 'abandoned', closed_at = $1 WHERE id = $2")
        .bind(now.as_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    let conversation = load_conversation(&mut *conn, h.conversation_id).await?;
    super::set_conversation_status(
        &mut *conn,
        conversation.id,
        conversation.status,
        ConversationStatus::Bot,
        now,
    )
    .await?;
    let h = load_handoff(&mut *conn, id).await?;
    super::emit(
        &mut *conn,
        crate::model::HandoffEventKind::Abandoned,
        &h,
        conversation.channel,
        now,
    )
    .await?;
    Ok(h)
}

/// Applies an agent update.
pub(super) async fn update_agent(
    conn: &mut PgConnection,
    id: AgentId,
    u: AgentUpdate,
) -> Result<crate::model::Agent, StoreError> {
    let mut a = load_agent(&mut *conn, id).await?;
    if let Some(skills) = u.skills {
        a.skills = skills;
    }
    if let Some(teams) = u.teams {
        a.teams = teams;
    }
    if let Some(m) = u.max_concurrent {
        a.max_concurrent = m;
    }
    if let Some(c) = u.capacity {
        a.capacity = c;
    }
    if let Some(h) = u.hours {
        a.hours = h;
    }
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    sqlx::query(
        "UPDATE agents SET skills = $1, teams = $2, max_concurrent = $3, capacity = $4, hours = $5 WHERE id = $6",
    )
    .bind(serde_json::to_string(&a.skills).map_err(corrupt)?)
    .bind(serde_json::to_string(&a.teams).map_err(corrupt)?)
    .bind(a.max_concurrent as i64)
    .bind(serde_json::to_string(&a.capacity).map_err(corrupt)?)
    .bind(a.hours.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    load_agent(&mut *conn, id).await
}

/// Remembers what the agent told the bot when handing the conversation back.
pub(super) async fn set_handback_note(
    conn: &mut PgConnection,
    id: ConversationId,
    note: Option<String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE conversations SET handback_note = $1, handed_back_at = $2, bot_fallbacks = 0 WHERE id = $3")
        .bind(note)
        .bind(now.as_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
