//! Handoff tickets: one per escalation from the bot to a person.

use super::message::str_enum;
use super::{AgentId, ConversationId, HandoffId, ParseError, Timestamp};
use std::fmt;
use std::str::FromStr;

/// Where a handoff ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    /// Waiting for an agent.
    Queued,
    /// Offered to an agent, not accepted yet.
    Assigned,
    /// An agent took it.
    Accepted,
    /// Closed by an agent.
    Resolved,
    /// Handed back to the bot.
    Released,
    /// The customer left while waiting (no message for the configured time).
    Abandoned,
}

str_enum!(HandoffStatus, "handoff status", {
    HandoffStatus::Queued => "queued",
    HandoffStatus::Assigned => "assigned",
    HandoffStatus::Accepted => "accepted",
    HandoffStatus::Resolved => "resolved",
    HandoffStatus::Released => "released",
    HandoffStatus::Abandoned => "abandoned",
});

impl HandoffStatus {
    /// Whether the ticket still needs or has a person.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            HandoffStatus::Queued | HandoffStatus::Assigned | HandoffStatus::Accepted
        )
    }
}

/// How urgent a ticket is; higher priorities are assigned first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Whenever someone is free.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Ahead of normal tickets.
    High,
    /// Ahead of everything.
    Urgent,
}

str_enum!(Priority, "priority", {
    Priority::Low => "low",
    Priority::Normal => "normal",
    Priority::High => "high",
    Priority::Urgent => "urgent",
});

impl Priority {
    /// A number that sorts like the priority, for storage.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }
}

/// Why a conversation was handed to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The customer asked for a person.
    CustomerRequest,
    /// The bot asked for a person (it could not help).
    BotRequest,
    /// The bot failed: it errored or could not be reached.
    BotFailure,
    /// Someone (an agent, a manager, an integration) requested it through the API.
    Manual,
    /// The bot's confidence in its answer was below the rule's threshold.
    BotLowConfidence,
    /// The bot did not understand the customer several times in a row.
    BotFallback,
    /// The customer's recent messages read as frustrated.
    Frustration,
    /// An escalation rule fired on something else (a customer tag, a keyword, the channel,
    /// too many bot turns or too long with the bot); the rule's name is on the ticket.
    Rule,
}

str_enum!(HandoffReason, "handoff reason", {
    HandoffReason::CustomerRequest => "customer_request",
    HandoffReason::BotRequest => "bot_request",
    HandoffReason::BotFailure => "bot_failure",
    HandoffReason::Manual => "manual",
    HandoffReason::BotLowConfidence => "bot_low_confidence",
    HandoffReason::BotFallback => "bot_fallback",
    HandoffReason::Frustration => "frustration",
    HandoffReason::Rule => "rule",
});

/// The ticket an agent works on: one per handoff, carrying the context the customer already gave.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Handoff {
    /// Its id.
    pub id: HandoffId,
    /// The conversation handed off.
    pub conversation_id: ConversationId,
    /// Why.
    pub reason: HandoffReason,
    /// Free text that came with the reason (the API caller's or the bot's words).
    pub reason_detail: Option<String>,
    /// A summary for the agent, from the bot or the requester.
    pub summary: Option<String>,
    /// How urgent.
    pub priority: Priority,
    /// Skills an agent needs to take it.
    pub required_skills: Vec<String>,
    /// Where it is.
    pub status: HandoffStatus,
    /// The agent it is offered to or owned by.
    pub assigned_agent_id: Option<AgentId>,
    /// When it was requested (and queued).
    pub requested_at: Timestamp,
    /// When it was offered to an agent.
    pub assigned_at: Option<Timestamp>,
    /// When the agent accepted it.
    pub accepted_at: Option<Timestamp>,
    /// When the agent first replied.
    pub first_reply_at: Option<Timestamp>,
    /// When it was resolved or released.
    pub closed_at: Option<Timestamp>,
    /// The team whose queue it waits in; `None` is the general queue every agent serves.
    pub team: Option<String>,
    /// The escalation rule that fired, by name.
    pub rule: Option<String>,
    /// What the bot understood the customer wants, if it said.
    pub intent: Option<String>,
    /// What the bot collected (order number, email, ...), so nobody asks again.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The customer's language, when known (`en`, `es`, ...).
    pub language: Option<String>,
    /// While offered: when the offer lapses and goes to the next agent.
    pub offer_deadline: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_sorts_above_normal() {
        assert!(Priority::Urgent > Priority::Normal);
        assert!(Priority::Urgent.rank() > Priority::High.rank());
        assert_eq!("urgent".parse::<Priority>().unwrap(), Priority::Urgent);
        assert!("asap".parse::<Priority>().is_err());
    }

    #[test]
    fn resolved_and_released_tickets_are_closed() {
        assert!(HandoffStatus::Accepted.is_open());
        assert!(!HandoffStatus::Resolved.is_open());
        assert!(!HandoffStatus::Released.is_open());
        assert!(!HandoffStatus::Abandoned.is_open());
    }
}
