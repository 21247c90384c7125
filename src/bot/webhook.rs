//! An external bot behind an HTTP webhook, in the style of Chatwoot's agent bots and Rasa's
//! REST channel: Baton POSTs each customer message; the bot answers with replies and may ask
//! for a handoff.
//!
//! Request: `{"conversation_id", "channel", "message": {"id","text"}, "history": [{"author","text"}]}`
//! Response: `{"replies": [{"text"}], "handoff": null | {"reason"?, "summary"?, "priority"?,
//! "team"?, "skills"?}, "confidence"?: 0..1, "fallback"?: bool, "intent"?, "fields"?: {...}}`
//! (Rasa's plain list `[{"text": ...}]` is accepted too). After an agent hands the
//! conversation back, the request carries `"handback": {"note", "at"}`.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Bot, BotError, BotHandoff, BotReply, BotTurn};
use crate::model::Priority;

/// A bot reached over HTTP.
pub struct WebhookBot {
    client: reqwest::Client,
    url: String,
    secret: Option<SecretString>,
}

impl WebhookBot {
    /// A bot at `url`, waiting at most `timeout` for each answer.
    pub fn new(
        url: String,
        secret: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            client,
            url,
            secret,
        })
    }
}

#[derive(Serialize)]
struct Request<'a> {
    conversation_id: String,
    channel: &'a str,
    message: MessageOut<'a>,
    history: Vec<HistoryItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handback: Option<Handback<'a>>,
}

#[derive(Serialize)]
struct Handback<'a> {
    note: Option<&'a str>,
    at: i64,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: String,
    text: &'a str,
}

#[derive(Serialize)]
struct HistoryItem<'a> {
    author: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Response {
    Full {
        #[serde(default)]
        replies: Vec<ReplyIn>,
        #[serde(default)]
        handoff: Option<HandoffIn>,
        #[serde(default)]
        confidence: Option<f32>,
        #[serde(default)]
        fallback: bool,
        #[serde(default)]
        intent: Option<String>,
        #[serde(default)]
        fields: serde_json::Map<String, serde_json::Value>,
    },
    List(Vec<ReplyIn>),
}

#[derive(Deserialize)]
struct ReplyIn {
    text: Option<String>,
}

#[derive(Deserialize)]
struct HandoffIn {
    reason: Option<String>,
    summary: Option<String>,
    priority: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    skills: Vec<String>,
}

#[async_trait]
impl Bot for WebhookBot {
    async fn respond(&self, turn: BotTurn<'_>) -> Result<BotReply, BotError> {
        let body = Request {
            conversation_id: turn.conversation.id.to_string(),
            channel: turn.conversation.channel.as_str(),
            message: MessageOut {
                id: turn.message.id.to_string(),
                text: &turn.message.text,
            },
            history: turn
                .history
                .iter()
                .map(|m| HistoryItem {
                    author: m.author_kind.as_str(),
                    text: &m.text,
                })
                .collect(),
            handback: turn.conversation.handed_back_at.map(|at| Handback {
                note: turn.handback_note,
                at: at.as_millis(),
            }),
        };
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(secret) = &self.secret {
            request = request.bearer_auth(secret.expose_secret());
        }
        let response = request.send().await.map_err(BotError::Unreachable)?;
        if !response.status().is_success() {
            return Err(BotError::Status(response.status().as_u16()));
        }
        let bytes = response.bytes().await.map_err(BotError::Unreachable)?;
        let parsed: Response =
            serde_json::from_slice(&bytes).map_err(|e| BotError::InvalidReply(e.to_string()))?;
        let (replies, handoff, confidence, fallback, intent, fields) = match parsed {
            Response::Full {
                replies,
                handoff,
                confidence,
                fallback,
                intent,
                fields,
            } => (replies, handoff, confidence, fallback, intent, fields),
            Response::List(replies) => (replies, None, None, false, None, Default::default()),
        };
        // A confidence outside 0..1 (or NaN) is the bot's bug, not a reason to escalate.
        let confidence = confidence.filter(|c| (0.0..=1.0).contains(c));
        Ok(BotReply {
            messages: replies
                .into_iter()
                .filter_map(|r| r.text)
                .filter(|t| !t.trim().is_empty())
                .collect(),
            handoff: handoff.map(|h| BotHandoff {
                reason: h.reason,
                summary: h.summary,
                priority: h.priority.and_then(|p| p.parse::<Priority>().ok()),
                team: h.team,
                skills: h.skills,
            }),
            confidence,
            fallback,
            intent: intent.filter(|i| !i.trim().is_empty()),
            fields,
        })
    }
}
