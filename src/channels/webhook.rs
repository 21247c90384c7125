//! What a platform's webhook delivery means, normalized: every messaging connector's parser
//! turns its platform's body into these events, so the rest of Baton sees one shape.

use crate::model::Attachment;

/// One thing a webhook delivery reports, in the order the platform listed them.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    /// A customer wrote (text, files, a button press): stored as an inbound message.
    Message(PlatformMessage),
    /// A customer changed an earlier message: the stored text is updated, the old one kept.
    Edit {
        /// The platform's id of the edited message.
        external_message_id: String,
        /// The sender, to check the edit comes from the author.
        external_sender_id: String,
        /// The new text.
        text: String,
    },
    /// A receipt for a message Baton sent: its delivery state changes; never a customer message.
    Status {
        /// The platform's id of Baton's message.
        external_message_id: String,
        /// What happened to it.
        status: PlatformStatus,
        /// The platform's error text for `Failed`.
        error: Option<String>,
    },
    /// Acknowledged and logged, nothing stored: echoes of our own messages, reads, reactions,
    /// typing, membership changes, and event types Baton does not know.
    Ignored {
        /// What it was (`echo`, `read`, `reaction`, `unknown:<type>`, ...), for the log.
        kind: String,
    },
}

/// A delivery receipt's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformStatus {
    /// Accepted by the platform.
    Sent,
    /// On the customer's device.
    Delivered,
    /// Seen by the customer.
    Read,
    /// Not delivered.
    Failed,
}

/// A customer's message as a platform reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlatformMessage {
    /// The platform's id for the sender (PSID, IGSID, wa_id, Telegram user id, phone number).
    pub external_sender_id: String,
    /// The name the platform gives, if any.
    pub sender_name: Option<String>,
    /// A phone number the platform gives for the sender (WhatsApp wa_id, Twilio From), E.164
    /// when possible: links the sender to an existing customer.
    pub phone: Option<String>,
    /// The platform's id for the message; a redelivery repeats it. Telegram's ids are unique
    /// per chat only, so its parser makes this `<chat id>:<message id>`.
    pub external_message_id: String,
    /// When the platform says it was sent, epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The text, or a caption; for a button press, the button's title.
    pub text: Option<String>,
    /// Files, shared places, contacts: each with a content type and a URL or platform file id.
    pub attachments: Vec<Attachment>,
    /// The developer payload of a quick reply, postback or interactive button.
    pub payload: Option<String>,
    /// The platform's id of the message this one replies to, if any.
    pub reply_to: Option<String>,
}

/// Why a webhook body cannot be read. Answered 400; nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not JSON (or not a form) at all.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Well-formed, but not the platform's shape.
    #[error("unexpected body: {0}")]
    Unexpected(String),
}

/// A platform message as every channel's messages are stored: the platform's user id becomes
/// the sender's identity on that channel; a phone number the platform gives links the sender
/// to an existing customer with that number. A message with only files gets a short text
/// naming them, so the conversation reads well.
pub fn to_inbound(
    channel: crate::model::ChannelKind,
    m: PlatformMessage,
) -> Result<crate::store::InboundMessage, crate::model::ParseError> {
    use crate::model::{Identity, MessageText, PhoneNumber, Timestamp};
    let identity = Identity::channel(channel, &m.external_sender_id)?;
    let text = match m.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => MessageText::parse(t)?,
        None => {
            let kinds: Vec<&str> = m
                .attachments
                .iter()
                .map(|a| a.content_type.split('/').next().unwrap_or("file"))
                .collect();
            let label = match (kinds.first(), m.payload.as_deref()) {
                (Some(_), _) => format!("[{}]", kinds.join(", ")),
                (None, Some(p)) => format!("[{p}]"),
                (None, None) => "[empty message]".to_owned(),
            };
            MessageText::parse(&label.chars().take(1000).collect::<String>())?
        }
    };
    Ok(crate::store::InboundMessage {
        channel,
        sender: crate::store::SenderProfile {
            identity,
            display_name: m.sender_name.filter(|n| !n.trim().is_empty()),
            email: None,
            phone: m.phone.as_deref().and_then(|p| PhoneNumber::parse(p).ok()),
        },
        conversation_id: None,
        external_id: Some(m.external_message_id),
        text,
        html: None,
        attachments: m.attachments,
        sent_at: m.timestamp_ms.map(Timestamp::from_millis),
    })
}

/// Inputs for the parsers' never-panic property tests: deterministic, so a failure reproduces,
/// and without an extra crate.
#[cfg(test)]
pub(crate) mod fuzz {
    use serde_json::Value;

    /// A linear congruential generator.
    pub struct Rng(pub u64);

    impl Rng {
        /// The next number (31 well-mixed bits).
        pub fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        /// One of `xs`.
        pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() as usize) % xs.len()]
        }
    }

    /// A random JSON document up to `depth` levels deep, built from the platform's own field
    /// names (`keys`) and values (`strs`) so that the parsers' inner paths are reached.
    pub fn random_json(r: &mut Rng, depth: u32, keys: &[&str], strs: &[&str]) -> Value {
        match r.next() % if depth == 0 { 5 } else { 7 } {
            0 => Value::Null,
            1 => Value::Bool(r.next().is_multiple_of(2)),
            2 => Value::from((r.next() as i64 - (1 << 30)).wrapping_mul(1_000_003)),
            3 => Value::from(r.pick(strs)),
            4 => Value::from(f64::from(r.next() as u32) / 7.0),
            5 => Value::Array(
                (0..r.next() % 4)
                    .map(|_| random_json(r, depth - 1, keys, strs))
                    .collect(),
            ),
            _ => Value::Object(
                (0..r.next() % 6)
                    .map(|_| {
                        (
                            r.pick(keys).to_owned(),
                            random_json(r, depth - 1, keys, strs),
                        )
                    })
                    .collect(),
            ),
        }
    }
}
