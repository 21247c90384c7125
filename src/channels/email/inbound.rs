//! From raw MIME to an [`InboundEmail`]: parsed, its visible text trimmed of quoted history,
//! its threading signals collected. The same path serves POST /ingest/email and the IMAP
//! poller.

use sha2::{Digest, Sha256};

use super::parse::{self, AutoKind, ParsedEmail};
use super::thread::{self, SupportAddress};
use super::trim::trim_reply;
use crate::model::{
    Attachment, Automated, ChannelKind, EmailAddress, Identity, MessageText, ReopenPolicy,
    ThreadSignals, Timestamp,
};
use crate::store::{FileData, InboundEmail, InboundMessage, SenderProfile};

/// Why a mail cannot be taken in. Each is the sender's (or the relay's) fault: retrying the
/// same bytes cannot help.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// Not a mail at all.
    #[error("not a parsable email: {0}")]
    Unparsable(String),
    /// No usable From address.
    #[error("the mail has no valid From address")]
    NoSender,
    /// Bigger than the configured limit.
    #[error("the mail is larger than {0} bytes")]
    TooLarge(usize),
    /// Our own mail came back (a loop): refused rather than answered.
    #[error("the mail comes from the support address itself")]
    FromOurselves,
}

/// Turns raw mail into what the store takes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmailInbound {
    support: Option<SupportAddress>,
    reopen: ReopenPolicy,
    subject_window_ms: i64,
    max_bytes: usize,
}

impl EmailInbound {
    /// `support` is the support mailbox (reply addresses are derived from it); without it,
    /// mail still threads by headers and subject.
    pub fn new(
        support: Option<SupportAddress>,
        reopen: ReopenPolicy,
        subject_window_days: u32,
        max_bytes: usize,
    ) -> Self {
        Self {
            support,
            reopen,
            subject_window_ms: i64::from(subject_window_days) * 86_400_000,
            max_bytes,
        }
    }

    /// The largest mail accepted.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Parses and prepares one mail.
    pub fn prepare(&self, raw: &[u8]) -> Result<InboundEmail, EmailError> {
        if raw.len() > self.max_bytes {
            return Err(EmailError::TooLarge(self.max_bytes));
        }
        let mail = parse::parse(raw).map_err(|e| EmailError::Unparsable(e.to_string()))?;
        let from = mail.from.as_ref().ok_or(EmailError::NoSender)?;
        let address = EmailAddress::parse(&from.address).map_err(|_| EmailError::NoSender)?;
        if let Some(support) = &self.support
            && support.is_ours(address.as_str())
        {
            return Err(EmailError::FromOurselves);
        }
        let signals = self.signals(&mail);
        let full_text = mail.text.clone();
        let visible = full_text
            .as_deref()
            .map(|t| trim_reply(t).visible)
            .unwrap_or_default();
        let text = [
            visible.as_str(),
            full_text.as_deref().unwrap_or_default(),
            mail.subject.as_deref().unwrap_or_default(),
        ]
        .into_iter()
        .find_map(|t| MessageText::parse(&clean_text(t)).ok())
        .unwrap_or_else(|| {
            MessageText::parse(if mail.attachments.is_empty() {
                "(empty message)"
            } else {
                "(attachments only)"
            })
            .expect("a constant text is valid")
        });
        let (attachments, files) = files(&mail);
        // A mail without a Message-ID is recognized again by its bytes.
        let external_id = mail
            .message_id
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(raw))));
        let identity = Identity::email(&address);
        Ok(InboundEmail {
            message: InboundMessage {
                channel: ChannelKind::Email,
                sender: SenderProfile {
                    identity,
                    display_name: from.name.clone().filter(|n| !n.trim().is_empty()),
                    email: Some(address),
                    phone: None,
                },
                conversation_id: None,
                external_id: Some(external_id),
                text,
                // Stored sanitized, so nothing that shows a message can run a mail's scripts or
                // load its trackers; the mail as sent stays in the stored original.
                html: mail.html.as_deref().map(parse::sanitize_html),
                attachments,
                sent_at: mail.date_ms.map(Timestamp::from_millis),
            },
            signals,
            subject: mail.subject.clone(),
            automated: mail.automated.map(|a| match a {
                AutoKind::AutoReply => Automated::AutoReply,
                AutoKind::Bounce => Automated::Bounce,
            }),
            full_text,
            raw: raw.to_vec(),
            files,
            reopen: self.reopen,
            subject_window_ms: self.subject_window_ms,
        })
    }

    fn signals(&self, mail: &ParsedEmail) -> ThreadSignals {
        let reply_tokens = match &self.support {
            Some(support) => {
                let mut tokens: Vec<String> = Vec::new();
                for m in mail.to.iter().chain(&mail.cc) {
                    if let Some(t) = support.token_of(&m.address)
                        && !tokens.contains(&t)
                    {
                        tokens.push(t);
                    }
                }
                tokens
            }
            None => Vec::new(),
        };
        let mut references = thread::clean_ids(mail.references.iter().map(String::as_str));
        // The header lists the oldest first; the nearest ancestor is the better match.
        references.reverse();
        ThreadSignals {
            reply_tokens,
            in_reply_to: thread::clean_ids(mail.in_reply_to.iter().map(String::as_str)),
            references,
            subject_key: mail.subject.as_deref().and_then(thread::subject_key),
        }
    }
}

/// Text fit for a message: control characters (other than line breaks and tabs) become
/// spaces, and the length is capped at [`MessageText::MAX_BYTES`] on a character boundary (the
/// whole text stays in the stored original).
fn clean_text(t: &str) -> String {
    let mut s: String = t
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    if s.len() > MessageText::MAX_BYTES {
        let mut end = MessageText::MAX_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s.trim().to_owned()
}

/// The attachments as the message lists them (with a download path) and their bytes.
fn files(mail: &ParsedEmail) -> (Vec<Attachment>, Vec<FileData>) {
    mail.attachments
        .iter()
        .map(|a| {
            let id = uuid::Uuid::now_v7().simple().to_string();
            (
                Attachment {
                    content_type: a.content_type.clone(),
                    url: Some(format!("/api/v1/attachments/{id}")),
                    name: a.filename.clone(),
                    size: Some(a.size as u64),
                    content_id: a.content_id.clone(),
                    inline: a.is_embedded(),
                },
                FileData {
                    name: a.filename.clone(),
                    content_type: a.content_type.clone(),
                    content_id: a.content_id.clone(),
                    inline: a.is_embedded(),
                    data: a.data.clone(),
                },
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> EmailInbound {
        EmailInbound::new(
            Some(SupportAddress::new(
                EmailAddress::parse("support@example.com").unwrap(),
            )),
            ReopenPolicy::Reopen,
            14,
            1 << 20,
        )
    }

    const REPLY: &str = "From: Ann <ann@customer.example>\r\n\
To: Support <support+0123456789abcdef01234567@example.com>\r\n\
Subject: Re: Printer broken\r\n\
Message-ID: <reply-1@customer.example>\r\n\
In-Reply-To: <out-2@example.com>\r\n\
References: <first@customer.example> <out-2@example.com>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
It works now, thanks!\r\n\
\r\n\
On Mon, 2 Nov 2026 at 10:00, Support <support@example.com> wrote:\r\n\
> Please turn it off and on.\r\n";

    #[test]
    fn a_reply_keeps_only_the_new_text_and_every_threading_signal() {
        let e = inbound().prepare(REPLY.as_bytes()).unwrap();
        assert_eq!(e.message.text.as_str(), "It works now, thanks!");
        assert!(e.full_text.unwrap().contains("Please turn it off"));
        assert_eq!(e.signals.reply_tokens, ["0123456789abcdef01234567"]);
        assert_eq!(e.signals.in_reply_to, ["out-2@example.com"]);
        assert_eq!(
            e.signals.references,
            ["out-2@example.com", "first@customer.example"]
        );
        assert_eq!(e.signals.subject_key.as_deref(), Some("printer broken"));
        assert_eq!(
            e.message.external_id.as_deref(),
            Some("reply-1@customer.example")
        );
        assert_eq!(
            e.message.sender.email.unwrap().as_str(),
            "ann@customer.example"
        );
        assert!(e.automated.is_none());
    }

    #[test]
    fn mail_from_the_support_address_is_refused_as_a_loop() {
        let raw = REPLY.replace("Ann <ann@customer.example>", "support@example.com");
        assert!(matches!(
            inbound().prepare(raw.as_bytes()),
            Err(EmailError::FromOurselves)
        ));
    }

    #[test]
    fn a_mail_without_message_id_is_keyed_by_its_bytes() {
        let raw = REPLY.replace("Message-ID: <reply-1@customer.example>\r\n", "");
        let a = inbound().prepare(raw.as_bytes()).unwrap();
        let b = inbound().prepare(raw.as_bytes()).unwrap();
        assert!(
            a.message
                .external_id
                .as_deref()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(a.message.external_id, b.message.external_id);
    }

    #[test]
    fn oversized_mail_is_refused_before_parsing() {
        let small = EmailInbound::new(None, ReopenPolicy::Reopen, 14, 100);
        assert!(matches!(
            small.prepare(REPLY.as_bytes()),
            Err(EmailError::TooLarge(100))
        ));
    }

    #[test]
    fn control_characters_are_blanked_and_long_text_is_cut_on_a_character_boundary() {
        assert_eq!(clean_text("a\u{0}b\u{7}c"), "a b c");
        let long = "é".repeat(MessageText::MAX_BYTES);
        let cut = clean_text(&long);
        assert!(cut.len() <= MessageText::MAX_BYTES && MessageText::parse(&cut).is_ok());
    }
}
