//! Meta Messenger and Instagram Messaging webhooks, read into [`WebhookEvent`]s.
//!
//! Both platforms deliver `{"object": "page" | "instagram", "entry": [...]}` where each entry
//! holds `messaging[]` items (one per event) or, for some Instagram subscriptions and the
//! dashboard's test button, `changes[]` items whose `value` is a messaging item. The body is
//! read as an untyped `serde_json::Value` on purpose: Meta adds fields and event types without
//! notice, and an event Baton does not know must become `Ignored`, never a 400 that makes Meta
//! retry and eventually disable the subscription.

use serde_json::Value;

use crate::channels::platform::{
    HUMAN_AGENT_WINDOW, SEND_TIMEOUT, STANDARD_WINDOW, read_answer, within_window,
};
use crate::channels::webhook::{PlatformMessage, PlatformStatus, WebhookError, WebhookEvent};
use crate::model::Attachment;

/// Reads a Messenger or Instagram webhook body.
///
/// Events come back in the order Meta listed them (entries, then items within each entry).
/// Only a body that is not JSON, or not a Meta page/instagram delivery at all, is an error;
/// every unknown or partial item becomes [`WebhookEvent::Ignored`].
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    parse_delivery(body).map(|(_, events)| events)
}

/// Like [`parse`], also telling which channel the delivery is for (`object: page` is
/// Messenger, `object: instagram` Instagram), from the same single read of the body.
pub fn parse_delivery(
    body: &[u8],
) -> Result<(crate::model::ChannelKind, Vec<WebhookEvent>), WebhookError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| WebhookError::Unexpected("top level is not a JSON object".into()))?;
    let channel = match root.get("object").and_then(Value::as_str) {
        Some("page") => crate::model::ChannelKind::Messenger,
        Some("instagram") => crate::model::ChannelKind::Instagram,
        Some(other) => {
            return Err(WebhookError::Unexpected(format!(
                "object {other:?} is neither page nor instagram"
            )));
        }
        None => return Err(WebhookError::Unexpected("no \"object\" string".into())),
    };
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| WebhookError::Unexpected("no \"entry\" array".into()))?;

    let mut events = Vec::new();
    for entry in entries {
        let mut seen = false;
        if let Some(items) = entry.get("messaging").and_then(Value::as_array) {
            seen = true;
            events.extend(items.iter().flat_map(messaging_events));
        }
        // Handover protocol: another app owns the thread, so these are not ours to answer.
        if let Some(items) = entry.get("standby").and_then(Value::as_array) {
            seen = true;
            events.extend(items.iter().map(|_| ignored("standby")));
        }
        if let Some(changes) = entry.get("changes").and_then(Value::as_array) {
            seen = true;
            events.extend(changes.iter().flat_map(change_events));
        }
        // Meta's Instagram examples also show `field`/`value` directly on the entry.
        if !seen && entry.get("field").is_some() {
            seen = true;
            events.extend(change_events(entry));
        }
        if !seen {
            events.push(ignored("unknown:entry"));
        }
    }
    Ok((channel, events))
}

/// An Instagram `changes[]` item. Field `messages` (and the `messaging_*` family) carries a
/// messaging item as its `value`; comments, mentions and insights are not conversations Baton
/// handles yet.
fn change_events(change: &Value) -> Vec<WebhookEvent> {
    let field = change.get("field").and_then(Value::as_str).unwrap_or("");
    let value = change.get("value").unwrap_or(&Value::Null);
    let is_messaging = field == "messages" || field.starts_with("messaging_");
    if is_messaging && value.get("sender").is_some() {
        messaging_events(value)
    } else if field.is_empty() {
        vec![ignored("unknown:change")]
    } else {
        vec![ignored(&format!("unknown:{field}"))]
    }
}

/// One messaging item as events: a delivery receipt naming several of Baton's messages
/// becomes one `Status` per message, everything else exactly one event.
fn messaging_events(item: &Value) -> Vec<WebhookEvent> {
    let mids: Vec<String> = item
        .get("delivery")
        .and_then(|d| d.get("mids"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| str_of(Some(m))).collect())
        .unwrap_or_default();
    if mids.is_empty() {
        // A watermark-only receipt cannot be tied to a message without a store lookup,
        // which is not the parser's job; it becomes Ignored("delivery").
        return vec![messaging_event(item)];
    }
    mids.into_iter()
        .map(|mid| WebhookEvent::Status {
            external_message_id: mid,
            status: PlatformStatus::Delivered,
            error: None,
        })
        .collect()
}

fn messaging_event(item: &Value) -> WebhookEvent {
    let sender = id_of(item.get("sender"));
    let timestamp_ms = item.get("timestamp").and_then(as_i64);

    if let Some(message) = item.get("message") {
        return message_event(message, sender, timestamp_ms);
    }
    if let Some(postback) = item.get("postback") {
        return postback_event(postback, sender, timestamp_ms);
    }
    if let Some(edit) = item.get("message_edit") {
        let mid = str_of(edit.get("mid"));
        return match (mid, sender, str_of(edit.get("text"))) {
            (Some(mid), Some(sender), Some(text)) => WebhookEvent::Edit {
                external_message_id: mid,
                external_sender_id: sender,
                text,
            },
            _ => ignored("edit"),
        };
    }
    if item.get("delivery").is_some() {
        // Receipts with mids are split into one Status per mid in `messaging_events`.
        return ignored("delivery");
    }
    // Known non-message events, acknowledged so Meta stops retrying.
    for (key, kind) in [
        ("read", "read"),
        ("reaction", "reaction"),
        ("referral", "referral"),
        ("optin", "optin"),
        ("account_linking", "account_linking"),
        ("pass_thread_control", "handover"),
        ("take_thread_control", "handover"),
        ("request_thread_control", "handover"),
        ("app_roles", "app_roles"),
        ("policy_enforcement", "policy_enforcement"),
        ("game_play", "game_play"),
    ] {
        if item.get(key).is_some() {
            return ignored(kind);
        }
    }
    let unknown = item
        .as_object()
        .and_then(|o| {
            o.keys()
                .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
        })
        .map_or_else(|| "unknown:empty".to_owned(), |k| format!("unknown:{k}"));
    ignored(&unknown)
}

fn message_event(
    message: &Value,
    sender: Option<String>,
    timestamp_ms: Option<i64>,
) -> WebhookEvent {
    // Echoes are the page's own outbound messages: storing them as inbound would make
    // Baton answer itself.
    if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
        return ignored("echo");
    }
    if message.get("is_deleted").and_then(Value::as_bool) == Some(true) {
        return ignored("delete");
    }
    if message.get("is_unsupported").and_then(Value::as_bool) == Some(true) {
        return ignored("unsupported");
    }
    let (Some(sender), Some(mid)) = (sender, str_of(message.get("mid"))) else {
        return ignored("unknown:message_without_ids");
    };
    let mut attachments: Vec<Attachment> = message
        .get("attachments")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(attachment_of).collect())
        .unwrap_or_default();
    let reply_to = message.get("reply_to");
    if let Some(story) = reply_to.and_then(|r| r.get("story")) {
        // An Instagram story reply only makes sense next to the story it answers.
        attachments.push(Attachment {
            content_type: "application/vnd.instagram.story-reply".into(),
            url: str_of(story.get("url")),
            name: str_of(story.get("id")),
            size: None,
            content_id: None,
            inline: false,
        });
    }
    let text = str_of(message.get("text"));
    if text.is_none() && attachments.is_empty() {
        return ignored("unknown:empty_message");
    }
    WebhookEvent::Message(PlatformMessage {
        external_sender_id: sender,
        external_message_id: mid,
        timestamp_ms,
        text,
        attachments,
        payload: message
            .get("quick_reply")
            .and_then(|q| str_of(q.get("payload"))),
        reply_to: reply_to.and_then(|r| str_of(r.get("mid"))),
        ..PlatformMessage::default()
    })
}

fn postback_event(
    postback: &Value,
    sender: Option<String>,
    timestamp_ms: Option<i64>,
) -> WebhookEvent {
    let Some(sender) = sender else {
        return ignored("unknown:postback_without_sender");
    };
    // Older postbacks carry no mid; a redelivery repeats sender and timestamp, so they make a
    // stable id that still deduplicates.
    let mid = str_of(postback.get("mid")).unwrap_or_else(|| {
        format!(
            "postback:{sender}:{}",
            timestamp_ms.map_or_else(String::new, |t| t.to_string())
        )
    });
    WebhookEvent::Message(PlatformMessage {
        external_sender_id: sender,
        external_message_id: mid,
        timestamp_ms,
        text: str_of(postback.get("title")),
        payload: str_of(postback.get("payload")),
        ..PlatformMessage::default()
    })
}

/// A Messenger/Instagram attachment as a MIME-typed [`Attachment`]. Meta gives a kind, not a
/// MIME type, so media get `image/*`-style wildcards and non-file kinds a vendor type.
fn attachment_of(a: &Value) -> Option<Attachment> {
    let kind = a.get("type").and_then(Value::as_str)?;
    let payload = a.get("payload").filter(|p| p.is_object());
    // Fallback (shared links) puts url and title beside the payload rather than in it.
    let url = payload
        .and_then(|p| str_of(p.get("url")))
        .or_else(|| str_of(a.get("url")));
    let name = payload
        .and_then(|p| str_of(p.get("title")).or_else(|| str_of(p.get("name"))))
        .or_else(|| str_of(a.get("title")));
    let content_type = match kind {
        "image" => "image/*",
        "video" | "ig_reel" | "reel" => "video/*",
        "audio" => "audio/*",
        "file" => "application/octet-stream",
        "location" => "application/vnd.meta.location",
        "share" | "ig_post" => "application/vnd.meta.share",
        "fallback" => "application/vnd.meta.fallback",
        "story_mention" => "application/vnd.instagram.story-mention",
        "template" => "application/vnd.meta.template",
        other => return Some(vendor_attachment(other, url, name)),
    };
    let url = url.or_else(|| location_uri(payload));
    Some(Attachment {
        content_type: content_type.into(),
        url,
        name,
        size: None,
        content_id: None,
        inline: false,
    })
}

fn vendor_attachment(kind: &str, url: Option<String>, name: Option<String>) -> Attachment {
    // Keeps an unknown kind visible to agents instead of dropping the customer's content.
    let safe: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    Attachment {
        content_type: format!("application/vnd.meta.{safe}"),
        url,
        name,
        size: None,
        content_id: None,
        inline: false,
    }
}

/// Messenger's (deprecated) location attachment as an RFC 5870 `geo:` URI.
fn location_uri(payload: Option<&Value>) -> Option<String> {
    let c = payload?.get("coordinates")?;
    let lat = c.get("lat")?.as_f64()?;
    let long = c.get("long")?.as_f64()?;
    Some(format!("geo:{lat},{long}"))
}

/// Kinds partly come from the body (unknown keys, types, fields), so they are capped to keep
/// a hostile body from flooding the log.
fn ignored(kind: &str) -> WebhookEvent {
    WebhookEvent::Ignored {
        kind: kind.chars().take(80).collect(),
    }
}

/// A string, or a number written as one: Meta documents ids as strings but some tools and
/// older payloads send them as JSON numbers.
fn str_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_of(v: Option<&Value>) -> Option<String> {
    str_of(v?.get("id")).filter(|s| !s.is_empty())
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound: the Messenger / Instagram connector.
// ---------------------------------------------------------------------------------------------

/// The message of a Graph API error: `{"error": {"message": ...}}`.
pub(crate) fn graph_error_message(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    let message = error.get("message")?.as_str()?;
    Some(match error.get("code").and_then(Value::as_i64) {
        Some(code) => format!("{message} (code {code})"),
        None => message.to_owned(),
    })
}

/// The Messenger and Instagram connector: sends through the Send API (`POST {base}/me/messages`
/// with the page access token). One value per channel: construct it with
/// [`ChannelKind::Messenger`](crate::model::ChannelKind::Messenger) or
/// [`ChannelKind::Instagram`](crate::model::ChannelKind::Instagram).
///
/// Within 24 hours of the customer's last message any reply goes out as a `RESPONSE`; after
/// that, only an agent's reply may go, with the `HUMAN_AGENT` tag, up to 7 days. Anything
/// later is refused without calling Meta.
///
/// Text only for now: attachments of the message are not sent.
pub struct MetaConnector {
    kind: crate::model::ChannelKind,
    store: crate::store::SharedStore,
    http: reqwest::Client,
    base_url: String,
    page_token: secrecy::SecretString,
}

impl MetaConnector {
    /// A connector for `kind` (Messenger or Instagram) calling the Graph API at `base_url`
    /// (e.g. `https://graph.facebook.com/v21.0`) with the page access token.
    pub fn new(
        kind: crate::model::ChannelKind,
        store: crate::store::SharedStore,
        http: reqwest::Client,
        base_url: String,
        page_token: secrecy::SecretString,
    ) -> Self {
        Self {
            kind,
            store,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            page_token,
        }
    }
}

/// How a Messenger/Instagram reply may go out, by the time since the customer last wrote:
/// `Ok(None)` as a plain `RESPONSE`, `Ok(Some("HUMAN_AGENT"))` tagged, `Err` not at all.
pub fn messaging_tag(
    last_inbound: Option<crate::model::Timestamp>,
    now: crate::model::Timestamp,
    author: crate::model::AuthorKind,
) -> Result<Option<&'static str>, String> {
    if within_window(last_inbound, now, STANDARD_WINDOW) {
        return Ok(None);
    }
    if last_inbound.is_none() {
        return Err(
            "the customer has not written on this channel yet: Meta only allows replies to customers who wrote first".into(),
        );
    }
    if author != crate::model::AuthorKind::Agent {
        return Err("outside the 24-hour window: only a human agent may still reply (HUMAN_AGENT tag, up to 7 days)".into());
    }
    if within_window(last_inbound, now, HUMAN_AGENT_WINDOW) {
        return Ok(Some("HUMAN_AGENT"));
    }
    Err("outside the 7-day human-agent window: the customer must write first".into())
}

#[async_trait::async_trait]
impl crate::channels::Connector for MetaConnector {
    fn kind(&self) -> crate::model::ChannelKind {
        self.kind
    }

    async fn send(
        &self,
        delivery: &crate::store::Delivery,
    ) -> Result<Option<String>, crate::channels::SendError> {
        use secrecy::ExposeSecret;
        let message = &delivery.message;
        let recipient = self
            .store
            .channel_recipient(message.conversation_id)
            .await?;
        let tag = messaging_tag(
            recipient.last_inbound_at,
            crate::model::Timestamp::now(),
            message.author_kind,
        )
        .map_err(crate::channels::SendError::Permanent)?;
        let platform = match self.kind {
            crate::model::ChannelKind::Instagram => "Instagram",
            _ => "Messenger",
        };
        // Messenger and Instagram carry a file or text in one message, never both: a file
        // goes first and its caption right after it. The file's id is the one kept (receipts
        // name the latest delivered message anyway). If the caption fails after the file
        // went out, the retry sends both again: a repeated file beats a lost caption.
        let mut parts = Vec::with_capacity(2);
        if let Some(file) = message.attachments.first() {
            parts.push(serde_json::json!({"attachment": attachment_payload(file)}));
        }
        parts.push(serde_json::json!({"text": message.text}));
        let mut first_id = None;
        for part in parts {
            let mut body = serde_json::json!({
                "recipient": {"id": recipient.external_id},
                "message": part,
            });
            match tag {
                Some(tag) => {
                    body["messaging_type"] = "MESSAGE_TAG".into();
                    body["tag"] = tag.into();
                }
                None => body["messaging_type"] = "RESPONSE".into(),
            }
            let token = self.page_token.expose_secret();
            let result = self
                .http
                .post(format!("{}/me/messages", self.base_url))
                .bearer_auth(token)
                .timeout(SEND_TIMEOUT)
                .json(&body)
                .send()
                .await;
            let answer = read_answer(platform, result, token, graph_error_message).await?;
            let id = answer
                .get("message_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            first_id = first_id.or(id);
        }
        Ok(first_id)
    }
}

/// The Send API's attachment object for a file Meta fetches from its URL.
fn attachment_payload(file: &crate::model::Attachment) -> Value {
    let ct = file.content_type.as_str();
    let kind = if ct.starts_with("image/") {
        "image"
    } else if ct.starts_with("video/") {
        "video"
    } else if ct.starts_with("audio/") {
        "audio"
    } else {
        "file"
    };
    serde_json::json!({
        "type": kind,
        "payload": {"url": file.url.clone().unwrap_or_default(), "is_reusable": true},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/messenger"
    );

    /// Expectation keys that are checked below.
    const CHECKED: &[&str] = &[
        "kind",
        "external_sender_id",
        "sender_display_name",
        "external_message_id",
        "external_message_ids",
        "timestamp_raw",
        "text",
        "attachments",
        "quick_reply_payload",
        "postback_payload",
        "status",
    ];
    /// Expectation keys Baton's normalized events have no place for, each for a stated reason.
    const NOT_REPRESENTED: &[&str] = &[
        // The recipient is always our page; routing uses the entry/page id, not the event.
        "external_recipient_id",
        // Derived from timestamp_raw, which is checked.
        "timestamp_utc",
        // A read/delivery watermark would need a store lookup; the parser reports mids only.
        "watermark",
        // Ad/shortlink attribution is not kept by PlatformMessage.
        "referral",
        // Prose for humans.
        "note",
    ];

    fn load(name: &str) -> (Vec<u8>, Value) {
        let body = std::fs::read(format!("{DIR}/{name}.json")).expect("payload");
        let exp = std::fs::read(format!("{DIR}/{name}.expected.json")).expect("expected");
        (body, serde_json::from_slice(&exp).expect("expected json"))
    }

    fn opt_str(v: &Value, key: &str) -> Option<Option<String>> {
        // Outer None: key absent (nothing to check); inner None: expected null.
        v.get(key).map(|x| x.as_str().map(str::to_owned))
    }

    fn disposition_allows(disposition: &str, events: &[WebhookEvent]) -> bool {
        let all = |f: &dyn Fn(&WebhookEvent) -> bool| !events.is_empty() && events.iter().all(f);
        let ignored_as = |kinds: &'static [&'static str]| move |e: &WebhookEvent| matches!(e, WebhookEvent::Ignored { kind } if kinds.contains(&kind.as_str()));
        match disposition {
            "inbound_message" | "postback" => all(&|e| matches!(e, WebhookEvent::Message(_))),
            "status_update" => all(&|e| {
                matches!(e, WebhookEvent::Status { .. }) || ignored_as(&["read", "delivery"])(e)
            }),
            "echo_outbound" => all(&ignored_as(&["echo"])),
            "reaction" => all(&ignored_as(&["reaction"])),
            "referral" => {
                all(&|e| matches!(e, WebhookEvent::Message(_)) || ignored_as(&["referral"])(e))
            }
            "optin" => all(&ignored_as(&["optin"])),
            "edit" => all(&|e| matches!(e, WebhookEvent::Edit { .. })),
            "ignore" | "unsupported" | "system" => {
                all(&|e| matches!(e, WebhookEvent::Ignored { .. }))
            }
            "mixed" | "mixed_batch" => !events.is_empty(),
            other => panic!("unknown disposition {other}"),
        }
    }

    /// Checks one expected event against the next actual event(s) and returns how many
    /// actual events it accounted for.
    fn check_event(name: &str, exp: &Value, actual: &[WebhookEvent]) -> usize {
        for key in exp.as_object().expect("event object").keys() {
            assert!(
                CHECKED.contains(&key.as_str()) || NOT_REPRESENTED.contains(&key.as_str()),
                "{name}: expectation key {key:?} is neither checked nor knowingly skipped"
            );
        }
        let kind = exp["kind"].as_str().expect("kind");
        let first = actual
            .first()
            .unwrap_or_else(|| panic!("{name}: no actual event for expected {kind}"));
        match kind {
            "message" | "postback" => {
                let WebhookEvent::Message(m) = first else {
                    panic!("{name}: expected a message, got {first:?}")
                };
                if let Some(s) = opt_str(exp, "external_sender_id") {
                    assert_eq!(Some(m.external_sender_id.clone()), s, "{name}: sender");
                }
                if let Some(s) = opt_str(exp, "sender_display_name") {
                    assert_eq!(m.sender_name, s, "{name}: sender name");
                }
                match opt_str(exp, "external_message_id") {
                    Some(Some(id)) => assert_eq!(m.external_message_id, id, "{name}: mid"),
                    // Meta gave no id: the parser must still make a non-empty, stable one.
                    Some(None) => assert!(!m.external_message_id.is_empty(), "{name}: mid"),
                    None => {}
                }
                if let Some(ts) = exp.get("timestamp_raw") {
                    assert_eq!(m.timestamp_ms, ts.as_i64(), "{name}: timestamp");
                }
                if let Some(t) = opt_str(exp, "text") {
                    assert_eq!(m.text, t, "{name}: text");
                }
                let payload = exp
                    .get("quick_reply_payload")
                    .or_else(|| exp.get("postback_payload"));
                assert_eq!(
                    m.payload.as_deref(),
                    payload.and_then(Value::as_str),
                    "{name}: payload"
                );
                if let Some(list) = exp.get("attachments").and_then(Value::as_array) {
                    assert_eq!(m.attachments.len(), list.len(), "{name}: attachment count");
                    for (a, e) in m.attachments.iter().zip(list) {
                        let t = e["type"].as_str().expect("attachment type");
                        assert!(
                            a.content_type.starts_with(t) || a.content_type.contains(t),
                            "{name}: {t} vs {}",
                            a.content_type
                        );
                        assert_eq!(
                            a.url.as_deref(),
                            e.get("url").and_then(Value::as_str),
                            "{name}: url"
                        );
                    }
                }
                1
            }
            "echo" => {
                assert_eq!(first, &ignored("echo"), "{name}");
                1
            }
            "delivery_receipt" | "read_receipt" => {
                let mids = exp["external_message_ids"].as_array().expect("mids");
                let status = match exp["status"].as_str() {
                    Some("delivered") => PlatformStatus::Delivered,
                    Some("read") => PlatformStatus::Read,
                    other => panic!("{name}: status {other:?}"),
                };
                if mids.len() == 1 {
                    let want = WebhookEvent::Status {
                        external_message_id: mids[0].as_str().expect("mid").into(),
                        status,
                        error: None,
                    };
                    // A read with a mid is still fine as Ignored: reads carry watermarks.
                    if status == PlatformStatus::Read && first == &ignored("read") {
                        return 1;
                    }
                    assert_eq!(first, &want, "{name}");
                } else {
                    let k = if status == PlatformStatus::Read {
                        "read"
                    } else {
                        "delivery"
                    };
                    assert_eq!(first, &ignored(k), "{name}");
                }
                1
            }
            other => panic!("{name}: expected kind {other:?} has no mapping in this test"),
        }
    }

    #[test]
    fn every_messenger_fixture_parses_as_expected() {
        let mut names: Vec<String> = std::fs::read_dir(DIR)
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".expected.json").map(str::to_owned))
            .collect();
        names.sort();
        assert_eq!(names.len(), 8, "fixture count changed: {names:?}");
        for name in &names {
            let (body, exp) = load(name);
            let events = parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut dispositions = vec![exp["disposition"].as_str().expect("disposition")];
            if let Some(acc) = exp.get("acceptable_dispositions").and_then(Value::as_array) {
                dispositions.extend(acc.iter().filter_map(Value::as_str));
            }
            assert!(
                dispositions.iter().any(|d| disposition_allows(d, &events)),
                "{name}: {events:?} fits none of {dispositions:?}"
            );
            let mut at = 0;
            for e in exp["events"].as_array().expect("events") {
                at += check_event(name, e, &events[at..]);
            }
            assert_eq!(at, events.len(), "{name}: extra events {:?}", &events[at..]);
        }
    }

    fn text_message(sender: &str, mid: &str, text: &str, ts: i64) -> Value {
        json!({"sender": {"id": sender}, "recipient": {"id": "PAGE"}, "timestamp": ts,
               "message": {"mid": mid, "text": text}})
    }

    #[test]
    fn several_entries_and_items_keep_their_order() {
        let body = json!({"object": "page", "entry": [
            {"id": "PAGE", "time": 1, "messaging": [text_message("u1", "m1", "one", 1), text_message("u2", "m2", "two", 2)]},
            {"id": "PAGE", "time": 2, "messaging": [
                {"sender": {"id": "u1"}, "recipient": {"id": "PAGE"}, "timestamp": 3, "read": {"watermark": 3}},
                text_message("u1", "m3", "three", 4)]}
        ]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        let mids: Vec<String> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Message(m) => m.external_message_id.clone(),
                WebhookEvent::Ignored { kind } => kind.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(mids, ["m1", "m2", "read", "m3"]);
    }

    #[test]
    fn unknown_event_types_are_ignored_not_rejected() {
        let body = json!({"object": "page", "entry": [
            {"id": "P", "messaging": [{"sender": {"id": "u"}, "recipient": {"id": "P"}, "timestamp": 1, "brand_new_thing": {}}]},
            {"id": "P", "something_else": []},
            {"id": "P", "messaging": [{"sender": {"id": "u"}, "reaction": {"mid": "m", "action": "react", "emoji": "x"}}]}
        ]});
        assert_eq!(
            parse(body.to_string().as_bytes()).unwrap(),
            [
                ignored("unknown:brand_new_thing"),
                ignored("unknown:entry"),
                ignored("reaction")
            ]
        );
    }

    #[test]
    fn malformed_json_and_foreign_shapes_are_errors() {
        assert!(matches!(
            parse(b"{not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(parse(b""), Err(WebhookError::Malformed(_))));
        assert!(matches!(parse(b"[]"), Err(WebhookError::Unexpected(_))));
        assert!(matches!(parse(b"{}"), Err(WebhookError::Unexpected(_))));
        assert!(matches!(
            parse(br#"{"object":"whatsapp_business_account","entry":[]}"#),
            Err(WebhookError::Unexpected(_))
        ));
        assert!(matches!(
            parse(br#"{"object":"page"}"#),
            Err(WebhookError::Unexpected(_))
        ));
        assert_eq!(parse(br#"{"object":"page","entry":[]}"#).unwrap(), []);
    }

    #[test]
    fn messenger_attachments_keep_their_urls_and_kinds() {
        let body = json!({"object": "page", "entry": [{"id": "P", "messaging": [{
        "sender": {"id": "u"}, "recipient": {"id": "P"}, "timestamp": 5,
        "message": {"mid": "m", "attachments": [
            {"type": "image", "payload": {"url": "https://cdn.test/i.jpg"}},
            {"type": "file", "payload": {"url": "https://cdn.test/f.pdf"}},
            {"type": "fallback", "payload": null, "title": "A link", "url": "https://example.test/"},
            {"type": "hologram", "payload": {"url": "https://cdn.test/h"}}
        ]}}]}]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        let WebhookEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        let got: Vec<(&str, Option<&str>)> = m
            .attachments
            .iter()
            .map(|a| (a.content_type.as_str(), a.url.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("image/*", Some("https://cdn.test/i.jpg")),
                ("application/octet-stream", Some("https://cdn.test/f.pdf")),
                (
                    "application/vnd.meta.fallback",
                    Some("https://example.test/")
                ),
                ("application/vnd.meta.hologram", Some("https://cdn.test/h")),
            ]
        );
        assert_eq!(m.attachments[2].name.as_deref(), Some("A link"));
        assert_eq!(m.text, None);
    }

    // Instagram shapes from Meta's Instagram Messaging webhook reference (messages field).

    #[test]
    fn instagram_text_message_becomes_a_message() {
        let body = json!({"object": "instagram", "entry": [{"id": "IGID", "time": 1569262486134i64,
            "messaging": [{"sender": {"id": "IGSID"}, "recipient": {"id": "IGID"}, "timestamp": 1569262485349i64,
                "message": {"mid": "aWdfZAG1", "text": "hello", "reply_to": {"mid": "aWdfZAG0"}}}]}]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            events,
            [WebhookEvent::Message(PlatformMessage {
                external_sender_id: "IGSID".into(),
                external_message_id: "aWdfZAG1".into(),
                timestamp_ms: Some(1569262485349),
                text: Some("hello".into()),
                reply_to: Some("aWdfZAG0".into()),
                ..PlatformMessage::default()
            })]
        );
    }

    #[test]
    fn instagram_image_attachment_keeps_its_cdn_url() {
        let body = json!({"object": "instagram", "entry": [{"id": "IGID", "time": 1,
            "messaging": [{"sender": {"id": "IGSID"}, "recipient": {"id": "IGID"}, "timestamp": 2,
                "message": {"mid": "m1", "attachments": [{"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}}]}}]}]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        let WebhookEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].content_type, "image/*");
        assert_eq!(
            m.attachments[0].url.as_deref(),
            Some("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1")
        );
    }

    #[test]
    fn instagram_story_mention_and_story_reply_are_messages_with_the_story_attached() {
        let body = json!({"object": "instagram", "entry": [{"id": "IGID", "time": 1, "messaging": [
            {"sender": {"id": "IGSID"}, "recipient": {"id": "IGID"}, "timestamp": 2,
             "message": {"mid": "m1", "attachments": [{"type": "story_mention", "payload": {"url": "https://cdn.test/story"}}]}},
            {"sender": {"id": "IGSID"}, "recipient": {"id": "IGID"}, "timestamp": 3,
             "message": {"mid": "m2", "text": "nice", "reply_to": {"story": {"url": "https://cdn.test/s2", "id": "S2"}}}}
        ]}]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        let [WebhookEvent::Message(a), WebhookEvent::Message(b)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            a.attachments[0].content_type,
            "application/vnd.instagram.story-mention"
        );
        assert_eq!(
            a.attachments[0].url.as_deref(),
            Some("https://cdn.test/story")
        );
        assert_eq!(b.text.as_deref(), Some("nice"));
        assert_eq!(
            b.attachments[0].content_type,
            "application/vnd.instagram.story-reply"
        );
        assert_eq!(b.attachments[0].url.as_deref(), Some("https://cdn.test/s2"));
        assert_eq!(b.reply_to, None);
    }

    #[test]
    fn instagram_echo_and_changes_shapes_are_handled() {
        let body = json!({"object": "instagram", "entry": [
            {"id": "IGID", "time": 1, "messaging": [{"sender": {"id": "IGID"}, "recipient": {"id": "IGSID"}, "timestamp": 2,
                "message": {"mid": "m1", "text": "our reply", "is_echo": true}}]},
            {"id": "IGID", "time": 3, "changes": [
                {"field": "messages", "value": {"sender": {"id": "12334"}, "recipient": {"id": "23245"}, "timestamp": "1527459824",
                    "message": {"mid": "random_mid", "text": "random_text"}}},
                {"field": "comments", "value": {"id": "c1", "text": "great post"}}
            ]},
            {"id": "IGID", "time": 4, "field": "mentions", "value": {"media_id": "1", "comment_id": "2"}}
        ]});
        let events = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(events[0], ignored("echo"));
        let WebhookEvent::Message(m) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(m.external_sender_id, "12334");
        assert_eq!(m.text.as_deref(), Some("random_text"));
        assert_eq!(events[2], ignored("unknown:comments"));
        assert_eq!(events[3], ignored("unknown:mentions"));
        assert_eq!(events.len(), 4);
    }

    use crate::channels::webhook::fuzz::{Rng as Lcg, random_json};

    fn random_value(r: &mut Lcg, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "object",
            "entry",
            "messaging",
            "changes",
            "field",
            "value",
            "sender",
            "recipient",
            "id",
            "timestamp",
            "message",
            "mid",
            "text",
            "attachments",
            "type",
            "payload",
            "url",
            "is_echo",
            "postback",
            "title",
            "delivery",
            "mids",
            "read",
            "reply_to",
            "story",
            "quick_reply",
            "message_edit",
            "coordinates",
            "lat",
            "long",
            "standby",
        ];
        const STRS: &[&str] = &[
            "page",
            "instagram",
            "image",
            "fallback",
            "messages",
            "",
            "x",
        ];
        random_json(r, depth, KEYS, STRS)
    }

    #[test]
    fn arbitrary_bytes_and_random_json_never_panic() {
        let mut r = Lcg(0x5eed);
        for _ in 0..2000 {
            let len = (r.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            let _ = parse(&bytes);
        }
        for i in 0..3000 {
            let mut v = random_value(&mut r, 5);
            // Most random documents fail the top-level check; force a valid envelope often
            // enough to exercise the item parsers.
            if i % 2 == 0 {
                let obj = r.pick(&["page", "instagram"]);
                v = json!({"object": obj, "entry": [
                    {"messaging": [random_value(&mut r, 4), {"sender": {"id": "u"}, "message": random_value(&mut r, 3)}]},
                    {"changes": [{"field": "messages", "value": random_value(&mut r, 4)}]},
                    random_value(&mut r, 3)]});
            }
            let _ = parse(v.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod connector_tests {
    use std::time::Duration;

    use serde_json::json;

    use secrecy::SecretString;

    use super::*;
    use crate::channels::platform::stand_in::{start, store_with_delivery};
    use crate::channels::platform::{excerpt, redact};
    use crate::channels::{Connector, SendError};
    use crate::model::{AuthorKind, ChannelKind, Timestamp};

    const HOUR: i64 = 60 * 60 * 1000;

    fn connector(kind: ChannelKind, store: crate::store::SharedStore, url: &str) -> MetaConnector {
        MetaConnector::new(
            kind,
            store,
            reqwest::Client::new(),
            url.to_owned(),
            SecretString::from("page-token-xyz"),
        )
    }

    #[tokio::test]
    async fn a_file_goes_first_by_url_and_its_caption_right_after() {
        let server = start(200, r#"{"recipient_id":"igsid-1","message_id":"m_file"}"#).await;
        let (_dir, store, mut delivery) = store_with_delivery(
            ChannelKind::Instagram,
            "igsid-1",
            AuthorKind::Agent,
            "Your label",
        )
        .await;
        let file = crate::channels::platform::test_file("application/pdf", "label.pdf");
        delivery.message.attachments = vec![file.clone()];
        let id = connector(ChannelKind::Instagram, store, &server.url)
            .send(&delivery)
            .await
            .unwrap();
        assert_eq!(id.as_deref(), Some("m_file"));
        let bodies: Vec<Value> = server.requests().iter().map(|r| r.json()).collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(
            bodies[0]["message"],
            json!({"attachment": {"type": "file",
                "payload": {"url": file.url.unwrap(), "is_reusable": true}}})
        );
        assert_eq!(bodies[1]["message"], json!({"text": "Your label"}));
        assert!(bodies.iter().all(|b| b["recipient"]["id"] == "igsid-1"));
    }

    #[tokio::test]
    async fn a_messenger_reply_within_a_day_is_sent_as_a_response() {
        let server = start(200, r#"{"recipient_id":"psid-1","message_id":"m_abc"}"#).await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::Messenger,
            "psid-1",
            AuthorKind::Bot,
            "Hi there",
        )
        .await;
        let id = connector(ChannelKind::Messenger, store, &server.url)
            .send(&delivery)
            .await
            .unwrap();
        assert_eq!(id.as_deref(), Some("m_abc"));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/me/messages");
        assert_eq!(r.header("authorization"), Some("Bearer page-token-xyz"));
        assert_eq!(
            r.json(),
            serde_json::json!({
                "recipient": {"id": "psid-1"},
                "messaging_type": "RESPONSE",
                "message": {"text": "Hi there"},
            })
        );
    }

    #[tokio::test]
    async fn an_instagram_connector_serves_instagram() {
        let server = start(200, r#"{"message_id":"ig_1"}"#).await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Instagram, "igsid-9", AuthorKind::Agent, "Yo").await;
        let c = connector(ChannelKind::Instagram, store, &server.url);
        assert_eq!(c.kind(), ChannelKind::Instagram);
        assert_eq!(c.send(&delivery).await.unwrap().as_deref(), Some("ig_1"));
        assert_eq!(server.requests()[0].json()["recipient"]["id"], "igsid-9");
    }

    #[tokio::test]
    async fn a_server_error_is_retryable() {
        let server = start(500, r#"{"error":{"message":"boom"}}"#).await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Messenger, "psid-1", AuthorKind::Bot, "Hi").await;
        let err = connector(ChannelKind::Messenger, store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Retryable(m) if m.contains("500")),
            "{err}"
        );
        assert!(!err.to_string().contains("page-token-xyz"));
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_with_metas_message() {
        let server = start(
            400,
            r#"{"error":{"message":"(#100) No matching user found","type":"OAuthException","code":100}}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Messenger, "psid-1", AuthorKind::Bot, "Hi").await;
        let err = connector(ChannelKind::Messenger, store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("No matching user found")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_message_id_is_sent_without_an_id() {
        let server = start(200, "{}").await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Messenger, "psid-1", AuthorKind::Bot, "Hi").await;
        let c = connector(ChannelKind::Messenger, store, &server.url);
        assert_eq!(c.send(&delivery).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retryable() {
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Messenger, "psid-1", AuthorKind::Bot, "Hi").await;
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = connector(
            ChannelKind::Messenger,
            store,
            &format!("http://127.0.0.1:{port}"),
        );
        assert!(matches!(
            c.send(&delivery).await,
            Err(SendError::Retryable(_))
        ));
    }

    #[tokio::test]
    async fn an_agent_reply_after_a_day_goes_with_the_human_agent_tag() {
        let server = start(200, r#"{"message_id":"m_tag"}"#).await;
        let (dir, store, delivery) = store_with_delivery(
            ChannelKind::Messenger,
            "psid-1",
            AuthorKind::Agent,
            "Sorry for the wait",
        )
        .await;
        crate::channels::platform::stand_in::backdate_inbound(&dir, 48).await;
        let id = connector(ChannelKind::Messenger, store, &server.url)
            .send(&delivery)
            .await
            .unwrap();
        assert_eq!(id.as_deref(), Some("m_tag"));
        let body = server.requests()[0].json();
        assert_eq!(body["messaging_type"], "MESSAGE_TAG");
        assert_eq!(body["tag"], "HUMAN_AGENT");
    }

    #[tokio::test]
    async fn a_reply_after_seven_days_is_refused_without_calling_meta() {
        let server = start(200, r#"{"message_id":"m_x"}"#).await;
        let (dir, store, delivery) = store_with_delivery(
            ChannelKind::Messenger,
            "psid-1",
            AuthorKind::Agent,
            "Hello?",
        )
        .await;
        crate::channels::platform::stand_in::backdate_inbound(&dir, 8 * 24).await;
        let err = connector(ChannelKind::Messenger, store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("7-day")),
            "{err}"
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn replies_after_a_day_need_an_agent_and_the_human_agent_tag() {
        let now = Timestamp::from_millis(1_000 * HOUR);
        let recent = Some(Timestamp::from_millis(now.as_millis() - 2 * HOUR));
        let two_days = Some(Timestamp::from_millis(now.as_millis() - 48 * HOUR));
        let eight_days = Some(Timestamp::from_millis(now.as_millis() - 8 * 24 * HOUR));
        assert_eq!(messaging_tag(recent, now, AuthorKind::Bot), Ok(None));
        assert_eq!(
            messaging_tag(two_days, now, AuthorKind::Agent),
            Ok(Some("HUMAN_AGENT"))
        );
        assert!(messaging_tag(two_days, now, AuthorKind::Bot).is_err());
        assert!(
            messaging_tag(eight_days, now, AuthorKind::Agent)
                .unwrap_err()
                .contains("7-day")
        );
        assert!(messaging_tag(None, now, AuthorKind::Agent).is_err());
    }

    #[test]
    fn the_window_includes_its_edge_and_excludes_no_message() {
        let now = Timestamp::from_millis(100 * HOUR);
        let day = Duration::from_secs(24 * 3600);
        assert!(within_window(
            Some(Timestamp::from_millis(now.as_millis() - 24 * HOUR)),
            now,
            day
        ));
        assert!(!within_window(
            Some(Timestamp::from_millis(now.as_millis() - 24 * HOUR - 1)),
            now,
            day
        ));
        assert!(!within_window(None, now, day));
    }

    #[test]
    fn secrets_are_masked_and_excerpts_are_short() {
        assert_eq!(redact("GET /botSECRET/x", "SECRET"), "GET /bot***/x");
        assert_eq!(excerpt(&"a".repeat(500)).chars().count(), 201);
    }
}
