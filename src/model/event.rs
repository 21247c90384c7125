//! Handoff events: one per step of a handoff, the raw material of analytics.

use super::message::str_enum;
use super::{
    AgentId, ChannelKind, ConversationId, HandoffId, HandoffReason, ParseError, Priority, Timestamp,
};
use std::fmt;
use std::str::FromStr;

/// A step in a handoff's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffEventKind {
    /// Someone or something asked for a person.
    Requested,
    /// The ticket entered the queue.
    Queued,
    /// The ticket was offered to an agent, who must accept within the queue's timeout.
    Offered,
    /// The agent turned the offer down.
    Declined,
    /// The offer lapsed unanswered; the ticket goes to the next agent.
    OfferTimedOut,
    /// An agent now owns the ticket (it accepted the offer, or was given it directly).
    Assigned,
    /// The agent accepted the offer.
    Accepted,
    /// The agent's first reply to the customer.
    FirstAgentReply,
    /// The ticket moved to another team or agent, with a note.
    Transferred,
    /// It waited longer than its queue allows and moved to the overflow team or up in priority.
    Overflowed,
    /// The agent closed it.
    Resolved,
    /// The conversation went back to the bot.
    Released,
    /// The customer left while waiting.
    Abandoned,
}

str_enum!(HandoffEventKind, "event kind", {
    HandoffEventKind::Requested => "requested",
    HandoffEventKind::Queued => "queued",
    HandoffEventKind::Offered => "offered",
    HandoffEventKind::Declined => "declined",
    HandoffEventKind::OfferTimedOut => "offer_timed_out",
    HandoffEventKind::Assigned => "assigned",
    HandoffEventKind::Accepted => "accepted",
    HandoffEventKind::FirstAgentReply => "first_agent_reply",
    HandoffEventKind::Transferred => "transferred",
    HandoffEventKind::Overflowed => "overflowed",
    HandoffEventKind::Resolved => "resolved",
    HandoffEventKind::Released => "released",
    HandoffEventKind::Abandoned => "abandoned",
});

/// One handoff step, with enough context that analytics never has to join back to the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HandoffEvent {
    /// Unique per event; ClickHouse deduplicates on it, so a re-shipped batch counts once.
    pub event_id: uuid::Uuid,
    /// Which step.
    pub kind: HandoffEventKind,
    /// The ticket.
    pub handoff_id: HandoffId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The conversation's channel.
    pub channel: ChannelKind,
    /// Why the handoff happened.
    pub reason: HandoffReason,
    /// The ticket's priority.
    pub priority: Priority,
    /// The agent involved, if any.
    pub agent_id: Option<AgentId>,
    /// When it happened, in epoch milliseconds.
    pub occurred_at_ms: i64,
    /// Milliseconds since the handoff was requested.
    pub wait_ms: i64,
    /// The team (queue) the ticket is in; empty for the general queue.
    #[serde(default)]
    pub team: String,
    /// What else the step says: the rule that fired, the team transferred to, the overflow.
    #[serde(default)]
    pub detail: String,
}

impl HandoffEvent {
    /// An event for a ticket at `now`, counting the wait from `requested_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: HandoffEventKind,
        handoff_id: HandoffId,
        conversation_id: ConversationId,
        channel: ChannelKind,
        reason: HandoffReason,
        priority: Priority,
        agent_id: Option<AgentId>,
        requested_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7(),
            kind,
            handoff_id,
            conversation_id,
            channel,
            reason,
            priority,
            agent_id,
            occurred_at_ms: now.as_millis(),
            wait_ms: now.millis_since(requested_at),
            team: String::new(),
            detail: String::new(),
        }
    }

    /// The same event naming the ticket's team and a detail.
    pub fn with(mut self, team: Option<&str>, detail: Option<&str>) -> Self {
        self.team = team.unwrap_or_default().to_owned();
        self.detail = detail.unwrap_or_default().to_owned();
        self
    }
}
