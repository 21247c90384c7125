//! Email-specific parts of the model: how a mail was threaded and what kind of mail it is.

/// How an inbound mail found its conversation, strongest signal first. Recorded on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadMatch {
    /// It was sent to the conversation's reply address (support+<token>@domain).
    ReplyAddress,
    /// Its In-Reply-To names a mail of the conversation.
    InReplyTo,
    /// Its References name a mail of the conversation.
    References,
    /// Same sender, same subject (without Re:/Fwd: and ticket tags), a recent open conversation.
    Subject,
    /// Nothing matched: a new conversation.
    New,
}

impl ThreadMatch {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplyAddress => "reply_address",
            Self::InReplyTo => "in_reply_to",
            Self::References => "references",
            Self::Subject => "subject",
            Self::New => "new",
        }
    }
}

/// Everything in a mail that can tie it to a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSignals {
    /// Reply tokens found in To/Cc addresses of the form support+<token>@domain.
    pub reply_tokens: Vec<String>,
    /// In-Reply-To ids, in header order.
    pub in_reply_to: Vec<String>,
    /// References ids, nearest ancestor first (the header lists the oldest first).
    pub references: Vec<String>,
    /// The normalized subject, if there is one left after normalizing.
    pub subject_key: Option<String>,
}

/// A mail that no person wrote: never answered by the bot, never handed off, never replied
/// to (that is how mail loops start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Automated {
    /// Out-of-office and other auto-responders.
    AutoReply,
    /// Delivery failures and other reports from mail systems.
    Bounce,
}

impl Automated {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoReply => "auto_reply",
            Self::Bounce => "bounce",
        }
    }
}

/// What a customer's reply to a resolved conversation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReopenPolicy {
    /// The conversation reopens with the bot (the default: the whole history stays in one place).
    #[default]
    Reopen,
    /// A new conversation starts, linked to the old one.
    New,
}
