//! Conversations, the channels they run on, and the status state machine.

use std::fmt;
use std::str::FromStr;

use super::{AgentId, ConversationId, CustomerId, ParseError, Timestamp};

/// The channel a conversation runs on. Replies always leave through the same channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The generic JSON API channel (`POST /api/v1/messages`).
    Api,
    /// The embeddable web chat widget.
    WebChat,
    /// Email, in and out.
    Email,
    /// Facebook Messenger.
    Messenger,
    /// Instagram direct messages.
    Instagram,
    /// WhatsApp Cloud API.
    WhatsApp,
    /// Telegram Bot API.
    Telegram,
    /// SMS/MMS through Twilio.
    Sms,
}

impl ChannelKind {
    /// Every channel, in display order.
    pub const ALL: [ChannelKind; 8] = [
        ChannelKind::Api,
        ChannelKind::WebChat,
        ChannelKind::Email,
        ChannelKind::Messenger,
        ChannelKind::Instagram,
        ChannelKind::WhatsApp,
        ChannelKind::Telegram,
        ChannelKind::Sms,
    ];

    /// The stable name used in the API, the store and analytics.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Api => "api",
            ChannelKind::WebChat => "web_chat",
            ChannelKind::Email => "email",
            ChannelKind::Messenger => "messenger",
            ChannelKind::Instagram => "instagram",
            ChannelKind::WhatsApp => "whats_app",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Sms => "sms",
        }
    }
}

impl ChannelKind {
    /// The longest text one message on this channel may carry, in characters: what each
    /// platform documents (Messenger 2,000, Instagram 1,000, WhatsApp and Telegram 4,096, an
    /// SMS of ten segments 1,600); web chat, API and email take what Baton stores.
    pub fn max_text_chars(self) -> usize {
        match self {
            ChannelKind::Messenger => 2000,
            ChannelKind::Instagram => 1000,
            ChannelKind::WhatsApp | ChannelKind::Telegram => 4096,
            ChannelKind::Sms => 1600,
            ChannelKind::Api | ChannelKind::WebChat | ChannelKind::Email => {
                super::MessageText::MAX_BYTES
            }
        }
    }

    /// A name people read.
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Api => "API",
            ChannelKind::WebChat => "Web chat",
            ChannelKind::Email => "Email",
            ChannelKind::Messenger => "Messenger",
            ChannelKind::Instagram => "Instagram",
            ChannelKind::WhatsApp => "WhatsApp",
            ChannelKind::Telegram => "Telegram",
            ChannelKind::Sms => "SMS",
        }
    }
}

impl ChannelKind {
    /// Whether replies must be pushed to the customer through the channel. The API channel's
    /// clients read replies back instead, so a stored reply is a delivered one.
    pub fn pushes_replies(self) -> bool {
        !matches!(self, ChannelKind::Api)
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError::new("channel", format!("unknown channel {s:?}")))
    }
}

/// Who owns a conversation right now.
///
/// The lifecycle is `bot -> queued -> assigned -> agent -> resolved`, with hand-back
/// (`agent -> bot`) and the few side steps a real queue needs; see [`ConversationStatus::can_become`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// The bot answers.
    Bot,
    /// Waiting for a person; the bot is silent.
    Queued,
    /// Offered to an agent who has not accepted yet.
    Assigned,
    /// A person owns the conversation.
    Agent,
    /// Finished. A new customer message reopens it with the bot.
    Resolved,
}

/// A status change that the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a conversation cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The current status.
    pub from: ConversationStatus,
    /// The status that was asked for.
    pub to: ConversationStatus,
}

impl ConversationStatus {
    /// The stable name used in the API, the store and analytics.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Bot => "bot",
            ConversationStatus::Queued => "queued",
            ConversationStatus::Assigned => "assigned",
            ConversationStatus::Agent => "agent",
            ConversationStatus::Resolved => "resolved",
        }
    }

    /// Whether the lifecycle allows going from `self` to `to`.
    pub fn can_become(self, to: ConversationStatus) -> bool {
        use ConversationStatus::*;
        matches!(
            (self, to),
            // The main path.
            (Bot, Queued) | (Queued, Assigned) | (Assigned, Agent) | (Agent, Resolved)
            // Hand back to the bot, from a person or before anyone picked it up.
            | (Agent, Bot) | (Assigned, Bot) | (Queued, Bot)
            // An offer withdrawn (agent went offline, declined, timed out) goes back to the queue.
            | (Assigned, Queued)
            // A person may close a ticket they were offered without accepting it first.
            | (Assigned, Resolved)
            // A transfer: back to a team's queue, or offered straight to another agent.
            | (Agent, Queued) | (Agent, Assigned)
            // The customer writes again after the conversation was closed.
            | (Resolved, Bot)
        )
    }

    /// Checks a transition and returns the new status.
    pub fn transition(
        self,
        to: ConversationStatus,
    ) -> Result<ConversationStatus, IllegalTransition> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// Whether the bot answers customer messages in this status.
    pub fn bot_answers(self) -> bool {
        matches!(self, ConversationStatus::Bot)
    }
}

impl fmt::Display for ConversationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConversationStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use ConversationStatus::*;
        [Bot, Queued, Assigned, Agent, Resolved]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError::new("conversation status", format!("unknown status {s:?}")))
    }
}

/// One conversation between a customer and support on one channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// The channel it runs on.
    pub channel: ChannelKind,
    /// Who owns it now.
    pub status: ConversationStatus,
    /// The customer.
    pub customer_id: CustomerId,
    /// The agent it is assigned to, if any.
    pub assigned_agent_id: Option<AgentId>,
    /// A subject line (email) or topic, if known.
    pub subject: Option<String>,
    /// When it started.
    pub created_at: Timestamp,
    /// When anything about it last changed.
    pub updated_at: Timestamp,
    /// How many times in a row the bot did not understand the customer.
    #[serde(skip_serializing_if = "is_zero")]
    pub bot_fallbacks: u32,
    /// When an agent last handed it back to the bot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_back_at: Option<Timestamp>,
    /// The note the agent left for the bot then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handback_note: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::ConversationStatus::*;
    use super::*;

    #[test]
    fn the_main_path_from_bot_to_resolved_is_allowed() {
        let mut s = Bot;
        for next in [Queued, Assigned, Agent, Resolved] {
            s = s.transition(next).unwrap();
        }
        assert_eq!(s, Resolved);
    }

    #[test]
    fn an_agent_can_hand_the_conversation_back_to_the_bot() {
        assert_eq!(Agent.transition(Bot), Ok(Bot));
    }

    #[test]
    fn a_transfer_puts_an_owned_conversation_back_in_a_queue_or_offers_it_to_another_agent() {
        assert_eq!(Agent.transition(Queued), Ok(Queued));
        assert_eq!(Agent.transition(Assigned), Ok(Assigned));
    }

    #[test]
    fn skipping_the_queue_or_reviving_a_closed_ticket_for_an_agent_is_illegal() {
        for (from, to) in [
            (Bot, Agent),
            (Bot, Assigned),
            (Bot, Resolved),
            (Queued, Agent),
            (Resolved, Agent),
            (Resolved, Queued),
            (Resolved, Assigned),
            (Queued, Resolved),
            (Bot, Bot),
        ] {
            assert_eq!(
                from.transition(to),
                Err(IllegalTransition { from, to }),
                "{from} -> {to} should be illegal"
            );
        }
    }

    #[test]
    fn only_a_bot_conversation_is_answered_by_the_bot() {
        assert!(Bot.bot_answers());
        for s in [Queued, Assigned, Agent, Resolved] {
            assert!(!s.bot_answers());
        }
    }

    #[test]
    fn channel_names_round_trip() {
        for c in ChannelKind::ALL {
            assert_eq!(c.as_str().parse::<ChannelKind>().unwrap(), c);
        }
        assert!("fax".parse::<ChannelKind>().is_err());
    }
}
