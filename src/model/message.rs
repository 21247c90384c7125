//! Messages and their attachments.

use std::fmt;
use std::str::FromStr;

use super::{AgentId, ConversationId, MessageId, ParseError, Timestamp};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer to support.
    In,
    /// From support (bot, agent or system) to the customer.
    Out,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorKind {
    /// The customer.
    Customer,
    /// The bot (built-in or external).
    Bot,
    /// A human agent.
    Agent,
    /// Baton itself: notices such as "a person will answer shortly".
    System,
}

/// Where an outbound message is on its way to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Inbound messages have no delivery.
    Received,
    /// Waiting to be sent (or to be retried).
    Pending,
    /// Handed to the channel.
    Sent,
    /// The channel confirmed delivery.
    Delivered,
    /// The customer has seen it (platforms that report reads).
    Read,
    /// Gave up; the reason is stored with the message.
    Failed,
}

macro_rules! str_enum {
    ($t:ty, $what:literal, { $($v:path => $s:literal),+ $(,)? }) => {
        impl $t {
            /// The stable name used in the API and the store.
            pub fn as_str(self) -> &'static str {
                match self { $($v => $s),+ }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($v),)+
                    other => Err(ParseError::new($what, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}
pub(crate) use str_enum;

str_enum!(Direction, "direction", { Direction::In => "in", Direction::Out => "out" });
str_enum!(AuthorKind, "author kind", {
    AuthorKind::Customer => "customer",
    AuthorKind::Bot => "bot",
    AuthorKind::Agent => "agent",
    AuthorKind::System => "system",
});
str_enum!(DeliveryStatus, "delivery status", {
    DeliveryStatus::Received => "received",
    DeliveryStatus::Pending => "pending",
    DeliveryStatus::Sent => "sent",
    DeliveryStatus::Delivered => "delivered",
    DeliveryStatus::Read => "read",
    DeliveryStatus::Failed => "failed",
});

/// Message text: non-empty after trimming, bounded, without NUL or other control characters
/// except newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    /// The longest text accepted, in bytes (64 KiB): longer than any chat message, and email
    /// bodies beyond it are stored as attachments rather than text.
    pub const MAX_BYTES: usize = 64 * 1024;

    /// Validates message text.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.trim().is_empty() {
            return Err(ParseError::new("text", "must not be empty"));
        }
        if s.len() > Self::MAX_BYTES {
            return Err(ParseError::new(
                "text",
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ParseError::new(
                "text",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes it into the string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A WhatsApp message template, the only thing WhatsApp delivers outside its 24-hour
/// customer-service window. The template itself (its text, its language versions) is
/// approved on Meta's side; Baton sends its name, language and body parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageTemplate {
    /// The template's name, e.g. `order_update`.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// Values for the body's `{{1}}`, `{{2}}`, ... in order.
    #[serde(default)]
    pub parameters: Vec<String>,
}

impl MessageTemplate {
    /// Validates a template reference: names are lower-case letters, digits and `_` (as
    /// Meta requires), languages look like `en` or `en_US`, at most 20 short parameters.
    pub fn parse(name: &str, language: &str, parameters: Vec<String>) -> Result<Self, ParseError> {
        if name.is_empty()
            || name.len() > 512
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ParseError::new(
                "template.name",
                "must be 1 to 512 of a-z, 0-9 and _",
            ));
        }
        let lang_ok = match language.split_once('_') {
            Some((l, r)) => {
                (2..=3).contains(&l.len())
                    && l.bytes().all(|b| b.is_ascii_lowercase())
                    && (2..=4).contains(&r.len())
                    && r.bytes().all(|b| b.is_ascii_alphanumeric())
            }
            None => {
                (2..=3).contains(&language.len())
                    && language.bytes().all(|b| b.is_ascii_lowercase())
            }
        };
        if !lang_ok {
            return Err(ParseError::new(
                "template.language",
                "must be a language code such as en or en_US",
            ));
        }
        if parameters.len() > 20 {
            return Err(ParseError::new(
                "template.parameters",
                "at most 20 parameters",
            ));
        }
        for p in &parameters {
            MessageText::parse(p).map_err(|_| {
                ParseError::new(
                    "template.parameters",
                    "each parameter must be non-empty text without control characters",
                )
            })?;
            if p.chars().count() > 1024 {
                return Err(ParseError::new(
                    "template.parameters",
                    "each parameter must be at most 1024 characters",
                ));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            language: language.to_owned(),
            parameters,
        })
    }

    /// What the transcript shows for it: Baton does not know the approved text.
    pub fn describe(&self) -> String {
        let mut s = format!("[WhatsApp template {} ({})]", self.name, self.language);
        for (i, p) in self.parameters.iter().enumerate() {
            s.push_str(&format!("\n{{{{{}}}}} = {p}", i + 1));
        }
        s
    }
}

/// A file that came with (or goes out with) a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// MIME type, e.g. `image/png`.
    pub content_type: String,
    /// Where the file can be fetched, if it lives elsewhere.
    pub url: Option<String>,
    /// The file's name, if known.
    pub name: Option<String>,
    /// Size in bytes, if known.
    pub size: Option<u64>,
    /// The Content-ID an HTML body refers to it by (`cid:`), for inline email images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    /// Shown inside the message body rather than as a separate file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Who wrote it.
    pub author_kind: AuthorKind,
    /// The agent who wrote it, for agent messages.
    pub agent_id: Option<AgentId>,
    /// The visible text.
    pub text: String,
    /// An HTML body, when the channel has one (email).
    pub html: Option<String>,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// The channel's own id for this message, used to ignore duplicate deliveries.
    pub external_id: Option<String>,
    /// Delivery state of outbound messages.
    pub delivery_status: DeliveryStatus,
    /// Why the last delivery attempt failed (a retry is pending, or it gave up), as the
    /// channel said it, so the agent sees what happened to their reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    /// When Baton stored it.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn a_template_reference_is_checked_before_it_is_sent() {
        let ok = MessageTemplate::parse("order_update", "en_US", vec!["#123".into()]).unwrap();
        assert_eq!(
            ok.describe(),
            "[WhatsApp template order_update (en_US)]\n{{1}} = #123"
        );
        assert!(MessageTemplate::parse("pt", "pt_BR", vec![]).is_ok());
        assert!(MessageTemplate::parse("Order Update", "en", vec![]).is_err());
        assert!(MessageTemplate::parse("x", "english", vec![]).is_err());
        assert!(MessageTemplate::parse("x", "en", vec!["".into()]).is_err());
        assert!(MessageTemplate::parse("x", "en", vec!["p".into(); 21]).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_or_binary_text_is_rejected() {
        assert!(MessageText::parse("   \n").is_err());
        assert!(MessageText::parse("hi\u{0}there").is_err());
        assert!(MessageText::parse(&"x".repeat(MessageText::MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn multi_line_text_is_kept_as_is() {
        assert_eq!(
            MessageText::parse("line 1\r\n\tline 2").unwrap().as_str(),
            "line 1\r\n\tline 2"
        );
    }

    #[test]
    fn enum_names_round_trip() {
        for d in [
            DeliveryStatus::Received,
            DeliveryStatus::Pending,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(d.as_str().parse::<DeliveryStatus>().unwrap(), d);
        }
        assert_eq!("agent".parse::<AuthorKind>().unwrap(), AuthorKind::Agent);
    }
}
