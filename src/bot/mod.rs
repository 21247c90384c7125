//! The bot that answers first: an external bot behind a webhook, or the built-in FAQ bot.

mod faq;
mod webhook;

pub use faq::FaqBot;
pub use webhook::WebhookBot;

use async_trait::async_trait;

use crate::model::{Conversation, Message, Priority};

/// What the bot sees when a customer writes.
pub struct BotTurn<'a> {
    /// The conversation.
    pub conversation: &'a Conversation,
    /// The customer's new message.
    pub message: &'a Message,
    /// Earlier messages, oldest first (the new one included last).
    pub history: &'a [Message],
    /// The note an agent left when handing the conversation back, if any (with
    /// `conversation.handed_back_at`): what the person did, so the bot can carry on.
    pub handback_note: Option<&'a str>,
}

/// The bot asks for a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotHandoff {
    /// In the bot's words, why.
    pub reason: Option<String>,
    /// What the agent should know.
    pub summary: Option<String>,
    /// How urgent, if the bot says.
    pub priority: Option<Priority>,
    /// The team that should take it, if the bot knows.
    pub team: Option<String>,
    /// Skills the agent needs, if the bot knows.
    pub skills: Vec<String>,
}

/// The bot's answer to one customer message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotReply {
    /// Messages to send, in order.
    pub messages: Vec<String>,
    /// Set when the bot wants a person to take over.
    pub handoff: Option<BotHandoff>,
    /// How sure the bot is of its answer, 0 to 1, if it says; escalation rules can compare it
    /// with a threshold.
    pub confidence: Option<f32>,
    /// The bot did not understand (its fallback answer); a streak of these can escalate.
    pub fallback: bool,
    /// What the bot understood the customer wants (`refund`, `order_status`, ...).
    pub intent: Option<String>,
    /// What the bot collected (order number, email, ...), handed to the agent.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The bot could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The external bot could not be reached or timed out.
    #[error("bot unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// It answered with an error status.
    #[error("bot answered HTTP {0}")]
    Status(u16),
    /// It answered something that is not a bot reply.
    #[error("bot answered an invalid reply: {0}")]
    InvalidReply(String),
}

/// A bot.
#[async_trait]
pub trait Bot: Send + Sync + 'static {
    /// How many earlier messages the bot wants with each turn. Loading history costs a read
    /// and parsing per message, so a bot that ignores it says 0.
    fn context_messages(&self) -> u32 {
        20
    }

    /// Answers one customer message.
    async fn respond(&self, turn: BotTurn<'_>) -> Result<BotReply, BotError>;
}
