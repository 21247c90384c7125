//! Outgoing mail: agent and bot replies (and the handoff notice) leave over SMTP with the
//! headers that make Gmail, Outlook and Apple Mail thread them, and with the conversation's
//! reply address, so the customer's answer comes back to the same conversation.

use async_trait::async_trait;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};

use super::thread::SupportAddress;
use crate::channels::{Connector, SendError};
use crate::model::{AuthorKind, ChannelKind, Message};
use crate::store::{Delivery, EmailThread, SharedStore};

/// References kept in an outgoing mail: the first (the thread's root) and the latest ones.
/// Clients thread on these; a conversation of hundreds of mails must not make a header of
/// hundreds of ids.
const MAX_REFERENCES: usize = 12;

/// Why the SMTP connector cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// The URL is not one lettre understands.
    #[error("invalid SMTP URL (expected smtp://user:pass@host:port or smtps://...): {0}")]
    Url(String),
}

/// The email connector: sends stored outbound messages of email conversations over SMTP.
pub struct EmailConnector {
    store: SharedStore,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    support: SupportAddress,
    from_name: String,
}

impl EmailConnector {
    /// A connector sending through the SMTP server at `url` (lettre's URL form:
    /// `smtp://user:pass@host:port`, `smtps://…`, `?tls=required` for STARTTLS).
    pub fn new(
        store: SharedStore,
        url: &str,
        support: SupportAddress,
        from_name: String,
    ) -> Result<Self, SmtpConfigError> {
        Ok(Self {
            store,
            transport: transport(url)?,
            support,
            from_name,
        })
    }
}

/// The SMTP transport for a URL. Its errors never include the password.
pub fn transport(url: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpConfigError> {
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| SmtpConfigError::Url(redacted(&e.to_string(), url)))?
        .timeout(Some(std::time::Duration::from_secs(30)))
        .build())
}

/// `text` with the password of `url` (scheme://user:password@host) masked.
fn redacted(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_owned(),
    }
}

#[async_trait]
impl Connector for EmailConnector {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    async fn send(&self, delivery: &Delivery) -> Result<Option<String>, SendError> {
        let message = &delivery.message;
        let thread = self.store.email_thread(message.conversation_id).await?;
        // The same id on every attempt: a retry after a lost answer is the same mail, and
        // clients that got it twice show it once.
        let message_id = format!("{}@{}", message.id, self.support.domain());
        // Remembered before sending, so a reply that arrives at once already threads.
        self.store
            .remember_sent_email(message.id, message.conversation_id, &message_id)
            .await?;
        let mail = build(
            &thread,
            message,
            &message_id,
            &self.support,
            &self.from_name,
        )
        .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(Some(message_id)),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Retryable(e.to_string())),
        }
    }
}

/// `Auto-Submitted: auto-replied` (RFC 3834) on what the bot and the system send, so the
/// customer's own auto-responder does not answer it and start a loop.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".into())
    }
}

/// The subject of a reply: "Re: " and the conversation's subject, once.
pub fn reply_subject(subject: Option<&str>) -> String {
    let s = subject.map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return "Re: your message".into();
    }
    let lower = s.to_lowercase();
    if lower.starts_with("re:") {
        s.to_owned()
    } else {
        format!("Re: {s}")
    }
}

/// The References header's ids: the root and the latest, at most [`MAX_REFERENCES`].
fn references(ids: &[String]) -> Vec<&String> {
    if ids.len() <= MAX_REFERENCES {
        return ids.iter().collect();
    }
    std::iter::once(&ids[0])
        .chain(ids[ids.len() - (MAX_REFERENCES - 1)..].iter())
        .collect()
}

/// The HTML alternative of a plain-text reply: escaped, paragraphs and line breaks kept.
pub fn text_to_html(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let paragraphs: Vec<String> = escaped
        .split("\n\n")
        .map(|p| format!("<p>{}</p>", p.trim_matches('\n').replace('\n', "<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html><html><body style=\"font-family: sans-serif\">\n{}\n</body></html>",
        paragraphs.join("\n")
    )
}

/// Text for a header (a display name, the subject): line breaks and other control characters
/// become one space. A customer's name or subject with CR/LF could otherwise start a header of
/// its own (`Bcc:`), and lettre refuses such values by panicking.
pub fn header_text(s: &str) -> String {
    s.split(|c: char| c.is_control())
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the mail for one stored outbound message.
pub fn build(
    thread: &EmailThread,
    message: &Message,
    message_id: &str,
    support: &SupportAddress,
    from_name: &str,
) -> Result<Mail, lettre::error::Error> {
    let parse = |name: Option<&str>, addr: &str| -> Result<Mailbox, lettre::error::Error> {
        let address = addr.parse().map_err(|e: lettre::address::AddressError| {
            lettre::error::Error::Io(std::io::Error::other(e))
        })?;
        Ok(Mailbox::new(
            name.map(header_text).filter(|n| !n.is_empty()),
            address,
        ))
    };
    let mut b = Mail::builder()
        .from(parse(Some(from_name), support.address().as_str())?)
        .reply_to(parse(
            Some(from_name),
            &support.reply_address(&thread.reply_token),
        )?)
        .to(parse(thread.to_name.as_deref(), thread.to.as_str())?)
        .subject(header_text(&reply_subject(thread.subject.as_deref())))
        .message_id(Some(format!("<{message_id}>")));
    if let Some(parent) = &thread.in_reply_to {
        b = b.in_reply_to(format!("<{parent}>"));
    }
    let refs = references(&thread.message_ids);
    if !refs.is_empty() {
        let joined = refs
            .iter()
            .map(|id| format!("<{id}>"))
            .collect::<Vec<_>>()
            .join(" ");
        b = b.references(joined);
    }
    if matches!(message.author_kind, AuthorKind::Bot | AuthorKind::System) {
        b = b.header(AutoSubmitted);
    }
    // Files an agent sends by URL go as links: fetching them here would make the mail depend
    // on a third server being up at send time.
    let mut text = message.text.clone();
    for file in &message.attachments {
        if let Some(url) = &file.url {
            let name = file.name.as_deref().unwrap_or("attachment");
            text.push_str(&format!("\n\n{name}: {url}"));
        }
    }
    let html = match &message.html {
        Some(html) if message.attachments.is_empty() => html.clone(),
        _ => text_to_html(&text),
    };
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ConversationId, DeliveryStatus, Direction, EmailAddress, MessageId, Timestamp,
    };

    fn thread(ids: usize) -> EmailThread {
        EmailThread {
            to: EmailAddress::parse("ann@customer.example").unwrap(),
            to_name: Some("Ann Example".into()),
            subject: Some("Printer broken".into()),
            reply_token: "0123456789abcdef01234567".into(),
            message_ids: (0..ids).map(|i| format!("m{i}@customer.example")).collect(),
            in_reply_to: Some(format!("m{}@customer.example", ids.saturating_sub(1))),
        }
    }

    fn message(author: AuthorKind) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            direction: Direction::Out,
            author_kind: author,
            agent_id: None,
            text: "Hello Ann,\n\nplease try turning it off & on.\nBest".into(),
            html: None,
            attachments: vec![],
            external_id: None,
            delivery_status: DeliveryStatus::Pending,
            delivery_error: None,
            created_at: Timestamp::now(),
        }
    }

    fn support() -> SupportAddress {
        SupportAddress::new(EmailAddress::parse("support@example.com").unwrap())
    }

    fn headers(mail: &Mail) -> String {
        let raw = String::from_utf8(mail.formatted()).unwrap();
        // Unfolded: long headers continue on the next line.
        raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ")
    }

    #[test]
    fn line_breaks_in_a_customers_name_or_subject_never_become_headers() {
        let mut t = thread(1);
        t.to_name = Some("Ann\r\nBcc: victim@evil.example".into());
        t.subject = Some("Hi\r\nBcc: victim2@evil.example\nX-Injected: yes".into());
        let mail = build(
            &t,
            &message(AuthorKind::Agent),
            "x1@example.com",
            &support(),
            "Acme\r\nCc: other@evil.example",
        )
        .unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            assert!(
                !matches!(name.as_str(), "bcc" | "cc" | "x-injected"),
                "an injected header: {line:?} in\n{head}"
            );
        }
    }

    #[test]
    fn a_reply_carries_the_headers_that_thread_it_in_mail_clients() {
        let mail = build(
            &thread(3),
            &message(AuthorKind::Agent),
            "x1@example.com",
            &support(),
            "Acme Support",
        )
        .unwrap();
        let h = headers(&mail);
        assert!(h.contains("Message-ID: <x1@example.com>"), "{h}");
        assert!(h.contains("In-Reply-To: <m2@customer.example>"), "{h}");
        assert!(
            h.contains(
                "References: <m0@customer.example> <m1@customer.example> <m2@customer.example>"
            ),
            "{h}"
        );
        assert!(
            h.contains("Reply-To: \"Acme Support\" <support+0123456789abcdef01234567@example.com>"),
            "{h}"
        );
        assert!(h.contains("Subject: Re: Printer broken"), "{h}");
        assert!(
            h.contains("To: \"Ann Example\" <ann@customer.example>"),
            "{h}"
        );
        assert!(
            !h.contains("Auto-Submitted"),
            "a person's reply is not automatic"
        );
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
    }

    #[test]
    fn a_file_an_agent_sends_by_url_goes_as_a_link_in_both_bodies() {
        let mut m = message(AuthorKind::Agent);
        m.attachments = vec![crate::model::Attachment {
            content_type: "application/pdf".into(),
            url: Some("https://files.example.com/invoice.pdf".into()),
            name: Some("invoice.pdf".into()),
            size: None,
            content_id: None,
            inline: false,
        }];
        let mail = build(&thread(1), &m, "x@example.com", &support(), "Support").unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert_eq!(
            raw.matches("invoice.pdf: https://files.example.com/invoice.pdf")
                .count(),
            2,
            "{raw}"
        );
    }

    #[test]
    fn bot_and_system_mail_is_marked_auto_submitted() {
        for author in [AuthorKind::Bot, AuthorKind::System] {
            let mail = build(
                &thread(1),
                &message(author),
                "x@example.com",
                &support(),
                "Support",
            )
            .unwrap();
            assert!(headers(&mail).contains("Auto-Submitted: auto-replied"));
        }
    }

    #[test]
    fn long_threads_keep_the_root_and_the_latest_references() {
        let t = thread(40);
        let refs = references(&t.message_ids);
        assert_eq!(refs.len(), MAX_REFERENCES);
        assert_eq!(refs[0], "m0@customer.example");
        assert_eq!(refs.last().unwrap().as_str(), "m39@customer.example");
    }

    #[test]
    fn the_subject_gets_one_re_prefix() {
        assert_eq!(reply_subject(Some("Printer broken")), "Re: Printer broken");
        assert_eq!(
            reply_subject(Some("RE: Printer broken")),
            "RE: Printer broken"
        );
        assert_eq!(reply_subject(None), "Re: your message");
    }

    #[test]
    fn html_alternative_escapes_the_text() {
        let html = text_to_html("a <b> & \"c\"\nnext\n\npara");
        assert!(html.contains("<p>a &lt;b&gt; &amp; &quot;c&quot;<br>\nnext</p>"));
        assert!(html.contains("<p>para</p>"));
    }

    #[test]
    fn a_bad_smtp_url_is_an_error_without_the_password() {
        let e = transport("bogus://user:hunter2@host")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            redacted("x user:hunter2@h", "smtp://user:hunter2@h:25"),
            "x user:***@h"
        );
    }
}
