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
}

str_enum!(HandoffStatus, "handoff status", {
    HandoffStatus::Queued => "queued",
    HandoffStatus::Assigned => "assigned",
    HandoffStatus::Accepted => "accepted",
    HandoffStatus::Resolved => "resolved",
    HandoffStatus::Released => "released",
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
}

str_enum!(HandoffReason, "handoff reason", {
    HandoffReason::CustomerRequest => "customer_request",
    HandoffReason::BotRequest => "bot_request",
    HandoffReason::BotFailure => "bot_failure",
    HandoffReason::Manual => "manual",
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
    }
}
