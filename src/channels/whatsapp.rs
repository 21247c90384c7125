//! WhatsApp Cloud API webhooks, read into [`WebhookEvent`]s.
//!
//! A delivery is `{"object": "whatsapp_business_account", "entry": [{"changes": [{"field",
//! "value"}]}]}`; `value` holds `messages[]` (customers writing), `statuses[]` (receipts for
//! Baton's messages), `errors[]`, or `message_echoes[]` (the business app's own messages). The
//! body is read as an untyped `serde_json::Value` because Meta adds message types often and an
//! unknown one must be acknowledged as `Ignored`, not answered 400 (Meta retries those for days).

use serde_json::Value;

use crate::channels::webhook::{PlatformMessage, PlatformStatus, WebhookError, WebhookEvent};
use crate::model::Attachment;

/// Reads a WhatsApp Cloud API webhook body.
///
/// Events come back in the order Meta listed them. Only a body that is not JSON, or not a
/// WhatsApp Business Account delivery at all, is an error.
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| WebhookError::Unexpected("top level is not a JSON object".into()))?;
    match root.get("object").and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(WebhookError::Unexpected(format!(
                "object {other:?} is not whatsapp_business_account"
            )));
        }
        None => return Err(WebhookError::Unexpected("no \"object\" string".into())),
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| WebhookError::Unexpected("no \"entry\" array".into()))?;

    let mut events = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            events.push(ignored("unknown:entry"));
            continue;
        };
        for change in changes {
            change_events(change, &mut events);
        }
    }
    Ok(events)
}

fn change_events(change: &Value, out: &mut Vec<WebhookEvent>) {
    let field = change.get("field").and_then(Value::as_str).unwrap_or("");
    let value = change.get("value").unwrap_or(&Value::Null);
    let before = out.len();
    let contacts = value.get("contacts").and_then(Value::as_array);
    if let Some(messages) = value.get("messages").and_then(Value::as_array) {
        out.extend(messages.iter().map(|m| message_event(m, contacts)));
    }
    if let Some(statuses) = value.get("statuses").and_then(Value::as_array) {
        out.extend(statuses.iter().map(status_event));
    }
    // Messages the business sent from the WhatsApp Business app (coexistence): ours, not the
    // customer's.
    if let Some(echoes) = value.get("message_echoes").and_then(Value::as_array) {
        out.extend(echoes.iter().map(|_| ignored("echo")));
    }
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        out.extend(errors.iter().map(|e| {
            let code = e.get("code").and_then(as_string).unwrap_or_default();
            ignored(&format!("error:{code}"))
        }));
    }
    if out.len() == before {
        // Template status, account updates, history sync...: not conversations.
        let field = if field.is_empty() { "change" } else { field };
        out.push(ignored(&format!("unknown:{field}")));
    }
}

fn message_event(m: &Value, contacts: Option<&Vec<Value>>) -> WebhookEvent {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
    // The newer business-scoped user id format can omit `from` (the phone number).
    let from = m.get("from").and_then(as_string).filter(|s| !s.is_empty());
    let from_user_id = m
        .get("from_user_id")
        .and_then(as_string)
        .filter(|s| !s.is_empty());
    let Some(sender) = from.clone().or_else(|| from_user_id.clone()) else {
        return ignored(&format!("unknown:{kind}_without_sender"));
    };
    let Some(id) = m.get("id").and_then(as_string) else {
        return ignored(&format!("unknown:{kind}_without_id"));
    };
    let contact = find_contact(contacts, from.as_deref(), from_user_id.as_deref());

    match kind {
        "reaction" => return ignored("reaction"),
        "revoke" => return ignored("revoke"),
        "system" => {
            let sub = m
                .get("system")
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            return ignored(&format!("system:{sub}"));
        }
        "edit" => {
            let edit = m.get("edit");
            let original = edit
                .and_then(|e| e.get("original_message_id"))
                .and_then(as_string);
            let text = edit.and_then(|e| e.get("message")).and_then(text_of);
            return match (original, text) {
                (Some(external_message_id), Some(text)) => WebhookEvent::Edit {
                    external_message_id,
                    external_sender_id: sender,
                    text,
                },
                // An edit that leaves no text (media swapped, caption removed) has nothing
                // Edit can carry.
                _ => ignored("edit_without_text"),
            };
        }
        _ => {}
    }

    let (text, payload, attachments) = match content_of(m, kind) {
        Some(c) => c,
        // `unsupported`, `interactive` without its object, `order`, or a type Meta added later.
        None => return ignored(&format!("unsupported:{kind}")),
    };

    let phone = from
        .as_deref()
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        .or_else(|| contact.and_then(|c| c.get("wa_id")).and_then(Value::as_str))
        .map(|wa_id| format!("+{}", wa_id.trim_start_matches('+')));

    WebhookEvent::Message(PlatformMessage {
        external_sender_id: sender,
        sender_name: contact
            .and_then(|c| c.get("profile"))
            .and_then(|p| p.get("name"))
            .and_then(as_string),
        phone,
        external_message_id: id,
        timestamp_ms: m.get("timestamp").and_then(seconds_to_ms),
        text,
        attachments,
        payload,
        reply_to: m
            .get("context")
            .and_then(|c| c.get("id"))
            .and_then(as_string),
    })
}

type Content = (Option<String>, Option<String>, Vec<Attachment>);

/// Text, payload and attachments of a message of type `kind`; `None` when Baton cannot
/// represent it.
fn content_of(m: &Value, kind: &str) -> Option<Content> {
    let body = m.get(kind);
    match kind {
        "text" => Some((
            body.and_then(|t| t.get("body")).and_then(as_string),
            None,
            vec![],
        )),
        "image" | "video" | "audio" | "document" | "sticker" => {
            let media = body?;
            let caption = media.get("caption").and_then(as_string);
            Some((caption, None, vec![media_attachment(kind, media)]))
        }
        "location" => {
            let loc = body?;
            let lat = loc.get("latitude").and_then(as_f64)?;
            let lon = loc.get("longitude").and_then(as_f64)?;
            let name = [loc.get("name"), loc.get("address")]
                .into_iter()
                .filter_map(|v| v.and_then(as_string))
                .collect::<Vec<_>>()
                .join(", ");
            let attachment = Attachment {
                content_type: "application/vnd.whatsapp.location".into(),
                url: Some(format!("geo:{lat},{lon}")),
                name: Some(name).filter(|n| !n.is_empty()),
                size: None,
                content_id: None,
                inline: false,
            };
            Some((None, None, vec![attachment]))
        }
        "contacts" => {
            let list = m.get("contacts").and_then(Value::as_array)?;
            let attachments = list
                .iter()
                .map(|c| Attachment {
                    content_type: "application/vnd.whatsapp.contact".into(),
                    url: c
                        .get("phones")
                        .and_then(Value::as_array)
                        .and_then(|p| p.first())
                        .and_then(|p| p.get("phone"))
                        .and_then(as_string)
                        .map(|p| format!("tel:{}", p.replace(' ', ""))),
                    name: c
                        .get("name")
                        .and_then(|n| n.get("formatted_name"))
                        .and_then(as_string),
                    size: None,
                    content_id: None,
                    inline: false,
                })
                .collect();
            Some((None, None, attachments))
        }
        "interactive" => {
            let i = body?;
            let reply = i.get("button_reply").or_else(|| i.get("list_reply"));
            if let Some(r) = reply {
                let title = r.get("title").and_then(as_string);
                return Some((title, r.get("id").and_then(as_string), vec![]));
            }
            // A WhatsApp Flow's answer: the form data is the payload.
            let nfm = i.get("nfm_reply")?;
            Some((
                nfm.get("body").and_then(as_string),
                nfm.get("response_json").and_then(as_string),
                vec![],
            ))
        }
        "button" => {
            let b = body?;
            Some((
                b.get("text").and_then(as_string),
                b.get("payload").and_then(as_string),
                vec![],
            ))
        }
        _ => None,
    }
}

/// A media message as an [`Attachment`]: `content_id` holds WhatsApp's media id, the durable
/// handle (the lookaside `url`, when given, still needs the access token and expires).
fn media_attachment(kind: &str, media: &Value) -> Attachment {
    let fallback = match kind {
        "image" => "image/*",
        "video" => "video/*",
        "audio" => "audio/*",
        "sticker" => "image/webp",
        _ => "application/octet-stream",
    };
    Attachment {
        content_type: media
            .get("mime_type")
            .and_then(as_string)
            .unwrap_or_else(|| fallback.into()),
        url: media.get("url").and_then(as_string),
        name: media.get("filename").and_then(as_string),
        size: media.get("file_size").and_then(Value::as_u64),
        content_id: media.get("id").and_then(as_string),
        inline: false,
    }
}

/// The text an edited message now carries: its body, or its new caption.
fn text_of(message: &Value) -> Option<String> {
    let kind = message.get("type").and_then(Value::as_str)?;
    let body = message.get(kind)?;
    body.get("body")
        .or_else(|| body.get("caption"))
        .and_then(as_string)
}

fn find_contact<'a>(
    contacts: Option<&'a Vec<Value>>,
    from: Option<&str>,
    from_user_id: Option<&str>,
) -> Option<&'a Value> {
    let contacts = contacts?;
    let matches = |c: &&Value| {
        let wa = c.get("wa_id").and_then(Value::as_str);
        let uid = c.get("user_id").and_then(Value::as_str);
        (from.is_some() && wa == from) || (from_user_id.is_some() && uid == from_user_id)
    };
    // A lone contact is the sender even when ids are formatted differently (sandbox numbers).
    contacts
        .iter()
        .find(matches)
        .or_else(|| (contacts.len() == 1).then(|| &contacts[0]))
}

fn status_event(s: &Value) -> WebhookEvent {
    let Some(id) = s.get("id").and_then(as_string) else {
        return ignored("unknown:status_without_id");
    };
    let status = match s.get("status").and_then(Value::as_str) {
        Some("sent") => PlatformStatus::Sent,
        Some("delivered") => PlatformStatus::Delivered,
        Some("read") => PlatformStatus::Read,
        Some("failed") => PlatformStatus::Failed,
        // `deleted`, `warning`, `played`, ...: nothing Baton's delivery state tracks.
        Some(other) => return ignored(&format!("status:{other}")),
        None => return ignored("unknown:status"),
    };
    let error = s
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(|e| e.get("title").or_else(|| e.get("message")))
        .and_then(as_string);
    WebhookEvent::Status {
        external_message_id: id,
        status,
        error,
    }
}

/// Kinds partly come from the body (unknown keys, types, fields), so they are capped to keep
/// a hostile body from flooding the log.
fn ignored(kind: &str) -> WebhookEvent {
    WebhookEvent::Ignored {
        kind: kind.chars().take(80).collect(),
    }
}

/// A string, or a number written as one (ids and codes arrive both ways in the wild).
fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

/// WhatsApp sends epoch seconds as a string; Baton keeps milliseconds.
fn seconds_to_ms(v: &Value) -> Option<i64> {
    let secs: i64 = match v {
        Value::String(s) => s.trim().parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    secs.checked_mul(1000)
}

// ---------------------------------------------------------------------------------------------
// Outbound: the WhatsApp Cloud API connector.
// ---------------------------------------------------------------------------------------------

/// Why a WhatsApp reply outside the customer-service window is refused.
pub const OUTSIDE_WINDOW: &str =
    "outside WhatsApp's 24-hour window: the customer must write first (or use a template)";

/// The WhatsApp Cloud API connector: `POST {base}/{phone_number_id}/messages`.
///
/// Free-form messages may only go within 24 hours of the customer's last message; later ones
/// are refused (permanently) without calling the API. Templates are not supported yet.
///
/// Text only for now: attachments of the message are not sent.
pub struct WhatsAppConnector {
    store: crate::store::SharedStore,
    http: reqwest::Client,
    base_url: String,
    token: secrecy::SecretString,
    phone_number_id: String,
}

impl WhatsAppConnector {
    /// A connector calling the Graph API at `base_url` (e.g. `https://graph.facebook.com/v21.0`)
    /// as the business phone number `phone_number_id`, with its access token.
    pub fn new(
        store: crate::store::SharedStore,
        http: reqwest::Client,
        base_url: String,
        token: secrecy::SecretString,
        phone_number_id: String,
    ) -> Self {
        Self {
            store,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            phone_number_id,
        }
    }
}

#[async_trait::async_trait]
impl crate::channels::Connector for WhatsAppConnector {
    fn kind(&self) -> crate::model::ChannelKind {
        crate::model::ChannelKind::WhatsApp
    }

    async fn send(
        &self,
        delivery: &crate::store::Delivery,
    ) -> Result<Option<String>, crate::channels::SendError> {
        use super::meta::graph_error_message;
        use super::platform::{read_answer, reply_window};
        use secrecy::ExposeSecret;
        let message = &delivery.message;
        let recipient = self
            .store
            .channel_recipient(message.conversation_id)
            .await?;
        // A template is what WhatsApp delivers outside the window; anything else is refused.
        if delivery.template.is_none() {
            reply_window(
                crate::model::ChannelKind::WhatsApp,
                recipient.last_inbound_at,
                crate::model::Timestamp::now(),
                message.author_kind,
            )
            .map_err(crate::channels::SendError::Permanent)?;
        }
        let body = send_body(&recipient.external_id, message, delivery.template.as_ref());
        let token = self.token.expose_secret();
        let result = self
            .http
            .post(format!(
                "{}/{}/messages",
                self.base_url, self.phone_number_id
            ))
            .bearer_auth(token)
            .timeout(super::platform::SEND_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let answer = read_answer("WhatsApp", result, token, graph_error_message).await?;
        Ok(answer
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }
}

/// The Cloud API request for one message: a template, one file with the text as its
/// caption, or plain text.
fn send_body(
    to: &str,
    message: &crate::model::Message,
    template: Option<&crate::model::MessageTemplate>,
) -> Value {
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    if let Some(t) = template {
        let parameters: Vec<Value> = t
            .parameters
            .iter()
            .map(|p| serde_json::json!({"type": "text", "text": p}))
            .collect();
        let mut template = serde_json::json!({"name": t.name, "language": {"code": t.language}});
        if !parameters.is_empty() {
            template["components"] =
                serde_json::json!([{"type": "body", "parameters": parameters}]);
        }
        body["type"] = "template".into();
        body["template"] = template;
    } else if let Some(file) = message.attachments.first() {
        let link = file.url.clone().unwrap_or_default();
        let ct = file.content_type.as_str();
        // Audio and stickers take no caption on WhatsApp, so with text they go as a document,
        // which does: the customer gets the words and the file in one message.
        let kind = if ct.starts_with("image/") && ct != "image/webp" {
            "image"
        } else if ct.starts_with("video/") {
            "video"
        } else {
            "document"
        };
        let mut media = serde_json::json!({"link": link, "caption": message.text});
        if kind == "document"
            && let Some(name) = &file.name
        {
            media["filename"] = name.clone().into();
        }
        body["type"] = kind.into();
        body[kind] = media;
    } else {
        body["type"] = "text".into();
        body["text"] = serde_json::json!({"body": message.text});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/whatsapp"
    );

    /// Expectation keys that are checked below.
    const CHECKED: &[&str] = &[
        "kind",
        "external_sender_id",
        "sender_display_name",
        "external_message_id",
        "timestamp_raw",
        "text",
        "attachments",
        "reply_to_external_id",
        "edits_external_id",
        "status",
        "errors",
        "system_type",
    ];
    /// Expectation keys Baton's normalized events have no place for, each for a stated reason.
    const NOT_REPRESENTED: &[&str] = &[
        // Derived from timestamp_raw, which is checked.
        "timestamp_utc",
        // Routing to the business number happens before parsing, from the verified entry.
        "business_phone_number_id",
        // The `kind` check covers what the type means for Baton.
        "wa_type",
        "type",
        // Reactions, revokes and echoes are Ignored: their targets have nowhere to go.
        "reacted_to_external_id",
        "emoji",
        "reaction_removed",
        "deletes_external_id",
        "to",
        // Receipts address Baton's message by id; the recipient is implied.
        "recipient_id",
        // Prose for humans.
        "note",
    ];

    fn opt_str(v: &Value, key: &str) -> Option<Option<String>> {
        v.get(key).map(|x| x.as_str().map(str::to_owned))
    }

    fn ignored_kind(e: &WebhookEvent) -> Option<&str> {
        match e {
            WebhookEvent::Ignored { kind } => Some(kind),
            _ => None,
        }
    }

    fn disposition_allows(disposition: &str, events: &[WebhookEvent]) -> bool {
        let all = |f: &dyn Fn(&WebhookEvent) -> bool| !events.is_empty() && events.iter().all(f);
        match disposition {
            "inbound_message" => all(&|e| matches!(e, WebhookEvent::Message(_))),
            "status_update" => all(&|e| matches!(e, WebhookEvent::Status { .. })),
            "echo_outbound" => all(&|e| ignored_kind(e) == Some("echo")),
            "reaction" => all(&|e| ignored_kind(e) == Some("reaction")),
            "delete" => all(&|e| ignored_kind(e) == Some("revoke")),
            "edit" => all(&|e| matches!(e, WebhookEvent::Edit { .. })),
            "system" => all(&|e| ignored_kind(e).is_some_and(|k| k.starts_with("system:"))),
            "ignore" | "unsupported" => all(&|e| ignored_kind(e).is_some()),
            "mixed" | "mixed_batch" => !events.is_empty(),
            other => panic!("unknown disposition {other}"),
        }
    }

    fn check_event(name: &str, exp: &Value, got: &WebhookEvent) {
        for key in exp.as_object().expect("event object").keys() {
            assert!(
                CHECKED.contains(&key.as_str()) || NOT_REPRESENTED.contains(&key.as_str()),
                "{name}: expectation key {key:?} is neither checked nor knowingly skipped"
            );
        }
        let kind = exp["kind"].as_str().expect("kind");
        match kind {
            "message" => {
                let WebhookEvent::Message(m) = got else {
                    panic!("{name}: expected a message, got {got:?}")
                };
                if let Some(Some(s)) = opt_str(exp, "external_sender_id") {
                    assert_eq!(m.external_sender_id, s, "{name}: sender");
                    if s.bytes().all(|b| b.is_ascii_digit()) {
                        assert_eq!(m.phone, Some(format!("+{s}")), "{name}: phone");
                    }
                }
                if let Some(s) = opt_str(exp, "sender_display_name") {
                    assert_eq!(m.sender_name, s, "{name}: sender name");
                }
                if let Some(Some(id)) = opt_str(exp, "external_message_id") {
                    assert_eq!(m.external_message_id, id, "{name}: id");
                }
                if let Some(ts) = exp.get("timestamp_raw") {
                    let secs: i64 = ts.as_str().expect("ts string").parse().expect("ts");
                    assert_eq!(m.timestamp_ms, Some(secs * 1000), "{name}: timestamp");
                }
                if let Some(t) = opt_str(exp, "text") {
                    assert_eq!(m.text, t, "{name}: text");
                }
                assert_eq!(
                    m.reply_to,
                    opt_str(exp, "reply_to_external_id").flatten(),
                    "{name}: reply_to"
                );
                let list = exp["attachments"].as_array().expect("attachments");
                assert_eq!(m.attachments.len(), list.len(), "{name}: attachment count");
                for (a, e) in m.attachments.iter().zip(list) {
                    let t = e["type"].as_str().expect("type");
                    match e.get("mime_type").and_then(Value::as_str) {
                        Some(mime) => assert_eq!(a.content_type, mime, "{name}"),
                        None => assert!(a.content_type.starts_with(t), "{name}: {t}"),
                    }
                    assert_eq!(
                        a.url.as_deref(),
                        e.get("url").and_then(Value::as_str),
                        "{name}"
                    );
                    assert_eq!(
                        a.content_id.as_deref(),
                        e.get("id").and_then(Value::as_str),
                        "{name}: media id"
                    );
                }
            }
            "edit" => {
                let WebhookEvent::Edit {
                    external_message_id,
                    external_sender_id,
                    text,
                } = got
                else {
                    panic!("{name}: expected an edit, got {got:?}")
                };
                // Edit names the message being changed, not the id of the edit notification.
                assert_eq!(
                    Some(external_message_id.as_str()),
                    exp["edits_external_id"].as_str(),
                    "{name}"
                );
                assert_eq!(
                    Some(external_sender_id.as_str()),
                    exp["external_sender_id"].as_str(),
                    "{name}"
                );
                assert_eq!(Some(text.as_str()), exp["text"].as_str(), "{name}");
            }
            "status" => {
                let WebhookEvent::Status {
                    external_message_id,
                    status,
                    error,
                } = got
                else {
                    panic!("{name}: expected a status, got {got:?}")
                };
                assert_eq!(
                    Some(external_message_id.as_str()),
                    exp["external_message_id"].as_str()
                );
                let want = match exp["status"].as_str() {
                    Some("sent") => PlatformStatus::Sent,
                    Some("delivered") => PlatformStatus::Delivered,
                    Some("read") => PlatformStatus::Read,
                    Some("failed") => PlatformStatus::Failed,
                    other => panic!("{name}: status {other:?}"),
                };
                assert_eq!(*status, want, "{name}");
                let want_error = exp
                    .get("errors")
                    .and_then(Value::as_array)
                    .and_then(|e| e.first())
                    .and_then(|e| e["title"].as_str());
                assert_eq!(error.as_deref(), want_error, "{name}: error");
            }
            "reaction" => assert_eq!(ignored_kind(got), Some("reaction"), "{name}"),
            "delete" => assert_eq!(ignored_kind(got), Some("revoke"), "{name}"),
            "echo" => assert_eq!(ignored_kind(got), Some("echo"), "{name}"),
            "unsupported" => {
                assert!(
                    ignored_kind(got).is_some_and(|k| k.starts_with("unsupported:")),
                    "{name}: {got:?}"
                );
            }
            "system" => {
                let sub = exp["system_type"].as_str().expect("system_type");
                assert_eq!(
                    ignored_kind(got),
                    Some(format!("system:{sub}").as_str()),
                    "{name}"
                );
            }
            "error" => {
                let code = exp["errors"][0]["code"].as_i64().expect("code");
                assert_eq!(
                    ignored_kind(got),
                    Some(format!("error:{code}").as_str()),
                    "{name}"
                );
            }
            other => panic!("{name}: expected kind {other:?} has no mapping in this test"),
        }
    }

    #[test]
    fn every_whatsapp_fixture_parses_as_expected() {
        let mut names: Vec<String> = std::fs::read_dir(DIR)
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".expected.json").map(str::to_owned))
            .collect();
        names.sort();
        assert_eq!(names.len(), 11, "fixture count changed: {names:?}");
        for name in &names {
            let body = std::fs::read(format!("{DIR}/{name}.json")).expect("payload");
            let exp: Value = serde_json::from_slice(
                &std::fs::read(format!("{DIR}/{name}.expected.json")).unwrap(),
            )
            .expect("expected json");
            let events = parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut dispositions = vec![exp["disposition"].as_str().expect("disposition")];
            if let Some(acc) = exp.get("acceptable_dispositions").and_then(Value::as_array) {
                dispositions.extend(acc.iter().filter_map(Value::as_str));
            }
            assert!(
                dispositions.iter().any(|d| disposition_allows(d, &events)),
                "{name}: {events:?} fits none of {dispositions:?}"
            );
            let expected = exp["events"].as_array().expect("events");
            assert_eq!(events.len(), expected.len(), "{name}: {events:?}");
            for (e, g) in expected.iter().zip(&events) {
                check_event(name, e, g);
            }
        }
    }

    fn envelope(value: Value) -> Vec<u8> {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
            {"field": "messages", "value": value}]}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn several_messages_and_statuses_keep_their_order() {
        let body = envelope(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"profile": {"name": "Ann"}, "wa_id": "15550001"}, {"profile": {"name": "Bob"}, "wa_id": "15550002"}],
            "messages": [
                {"from": "15550001", "id": "w1", "timestamp": "10", "type": "text", "text": {"body": "a"}},
                {"from": "15550002", "id": "w2", "timestamp": "11", "type": "interactive",
                 "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
                {"from": "15550001", "id": "w3", "timestamp": "12", "type": "location",
                 "location": {"latitude": 1.5, "longitude": -2.25, "name": "Office"}}
            ],
            "statuses": [{"id": "out1", "status": "read", "timestamp": "13", "recipient_id": "15550001"}]
        }));
        let events = parse(&body).unwrap();
        assert_eq!(events.len(), 4);
        let WebhookEvent::Message(a) = &events[0] else {
            panic!()
        };
        let WebhookEvent::Message(b) = &events[1] else {
            panic!()
        };
        let WebhookEvent::Message(c) = &events[2] else {
            panic!()
        };
        assert_eq!(
            (a.external_message_id.as_str(), a.sender_name.as_deref()),
            ("w1", Some("Ann"))
        );
        assert_eq!(a.timestamp_ms, Some(10_000));
        assert_eq!(
            (
                b.sender_name.as_deref(),
                b.text.as_deref(),
                b.payload.as_deref()
            ),
            (Some("Bob"), Some("Yes"), Some("yes"))
        );
        assert_eq!(b.phone.as_deref(), Some("+15550002"));
        assert_eq!(c.attachments[0].url.as_deref(), Some("geo:1.5,-2.25"));
        assert_eq!(
            events[3],
            WebhookEvent::Status {
                external_message_id: "out1".into(),
                status: PlatformStatus::Read,
                error: None
            }
        );
    }

    #[test]
    fn a_message_without_from_falls_back_to_from_user_id() {
        let body = envelope(json!({
            "contacts": [{"profile": {"name": "Cy"}, "user_id": "US.123"}],
            "messages": [{"from_user_id": "US.123", "id": "w9", "timestamp": "1", "type": "text", "text": {"body": "hi"}}]
        }));
        let events = parse(&body).unwrap();
        let WebhookEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(m.external_sender_id, "US.123");
        assert_eq!(m.sender_name.as_deref(), Some("Cy"));
        assert_eq!(m.phone, None);
    }

    #[test]
    fn unknown_message_types_and_fields_are_ignored_not_rejected() {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W", "changes": [
                {"field": "messages", "value": {"messages": [{"from": "1", "id": "x", "timestamp": "1", "type": "hologram"}]}},
                {"field": "message_template_status_update", "value": {"event": "APPROVED"}}
            ]},
            {"id": "W"}
        ]});
        assert_eq!(
            parse(body.to_string().as_bytes()).unwrap(),
            [
                ignored("unsupported:hologram"),
                ignored("unknown:message_template_status_update"),
                ignored("unknown:entry")
            ]
        );
    }

    #[test]
    fn malformed_json_and_foreign_shapes_are_errors() {
        assert!(matches!(
            parse(b"\xff\xfe"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"{\"object\":"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(parse(b"42"), Err(WebhookError::Unexpected(_))));
        assert!(matches!(
            parse(br#"{"object":"page","entry":[]}"#),
            Err(WebhookError::Unexpected(_))
        ));
        assert!(matches!(
            parse(br#"{"object":"whatsapp_business_account","entry":{}}"#),
            Err(WebhookError::Unexpected(_))
        ));
    }

    use crate::channels::webhook::fuzz::{Rng as Lcg, random_json};

    fn random_value(r: &mut Lcg, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "messages",
            "statuses",
            "errors",
            "contacts",
            "message_echoes",
            "from",
            "from_user_id",
            "id",
            "timestamp",
            "type",
            "text",
            "body",
            "image",
            "document",
            "caption",
            "mime_type",
            "url",
            "location",
            "latitude",
            "longitude",
            "interactive",
            "button_reply",
            "list_reply",
            "nfm_reply",
            "button",
            "payload",
            "context",
            "edit",
            "message",
            "original_message_id",
            "system",
            "status",
            "code",
            "title",
            "profile",
            "name",
            "wa_id",
            "phones",
            "phone",
        ];
        const STRS: &[&str] = &[
            "text",
            "image",
            "edit",
            "interactive",
            "location",
            "contacts",
            "failed",
            "read",
            "",
            "123",
            "9999999999999999999999",
        ];
        random_json(r, depth, KEYS, STRS)
    }

    #[test]
    fn arbitrary_bytes_and_random_json_never_panic() {
        let mut r = Lcg(0xbadc0de);
        for _ in 0..2000 {
            let len = (r.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            let _ = parse(&bytes);
        }
        for i in 0..3000 {
            let body = if i % 3 == 0 {
                random_value(&mut r, 5).to_string().into_bytes()
            } else {
                let t = r.pick(&[
                    "text",
                    "image",
                    "edit",
                    "interactive",
                    "location",
                    "contacts",
                    "button",
                    "system",
                ]);
                let inner = random_value(&mut r, 3);
                envelope(json!({
                    "contacts": random_value(&mut r, 2),
                    "messages": [random_value(&mut r, 4), {"from": "1", "id": "x", "timestamp": random_value(&mut r, 0), "type": t, t: inner}],
                    "statuses": [random_value(&mut r, 3)]
                }))
            };
            let _ = parse(&body);
        }
    }
}

#[cfg(test)]
mod connector_tests {
    use secrecy::SecretString;

    use super::*;
    use crate::channels::platform::stand_in::{start, store_with_delivery};
    use crate::channels::{Connector, SendError};
    use crate::model::{AuthorKind, ChannelKind, Timestamp};

    fn connector(store: crate::store::SharedStore, url: &str) -> WhatsAppConnector {
        WhatsAppConnector::new(
            store,
            reqwest::Client::new(),
            url.to_owned(),
            SecretString::from("wa-token-xyz"),
            "1055".into(),
        )
    }

    #[tokio::test]
    async fn a_text_reply_is_posted_to_the_phone_numbers_messages() {
        let server = start(
            200,
            r#"{"messaging_product":"whatsapp","contacts":[{"input":"4915112345678","wa_id":"4915112345678"}],"messages":[{"id":"wamid.HBgL"}]}"#,
        )
        .await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Agent,
            "Hallo!",
        )
        .await;
        let id = connector(store, &server.url).send(&delivery).await.unwrap();
        assert_eq!(id.as_deref(), Some("wamid.HBgL"));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/1055/messages");
        assert_eq!(r.header("authorization"), Some("Bearer wa-token-xyz"));
        assert_eq!(
            r.json(),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "4915112345678",
                "type": "text",
                "text": {"body": "Hallo!"},
            })
        );
    }

    #[tokio::test]
    async fn a_server_error_is_retryable() {
        let server = start(503, r#"{"error":{"message":"Service unavailable"}}"#).await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Bot,
            "Hi",
        )
        .await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Retryable(m) if m.contains("503")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn too_many_requests_is_retryable() {
        let server = start(429, r#"{"error":{"message":"rate limit","code":130429}}"#).await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Bot,
            "Hi",
        )
        .await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Retryable(_)), "{err}");
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_with_metas_message() {
        let server = start(
            400,
            r#"{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030}}"#,
        )
        .await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Bot,
            "Hi",
        )
        .await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("not in allowed list")),
            "{err}"
        );
        assert!(!err.to_string().contains("wa-token-xyz"));
    }

    #[tokio::test]
    async fn a_conversation_without_a_recipient_is_refused_without_calling_whatsapp() {
        let server = start(200, r#"{"messages":[{"id":"wamid.x"}]}"#).await;
        let (_dir, store, mut delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Bot,
            "Hi",
        )
        .await;
        // A conversation that does not exist has no recipient: the store's error is permanent.
        delivery.message.conversation_id = crate::model::ConversationId::new();
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Permanent(_)), "{err}");
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_reply_outside_the_window_is_refused_without_calling_whatsapp() {
        let server = start(200, r#"{"messages":[{"id":"wamid.x"}]}"#).await;
        let (dir, store, delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Agent,
            "Hi",
        )
        .await;
        crate::channels::platform::stand_in::backdate_inbound(&dir, 25).await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m == OUTSIDE_WINDOW),
            "{err}"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_template_goes_out_even_after_the_window_closed() {
        let server = start(200, r#"{"messages":[{"id":"wamid.tpl"}]}"#).await;
        let (dir, store, mut delivery) = store_with_delivery(
            ChannelKind::WhatsApp,
            "4915112345678",
            AuthorKind::Agent,
            "[template]",
        )
        .await;
        crate::channels::platform::stand_in::backdate_inbound(&dir, 72).await;
        delivery.template = Some(
            crate::model::MessageTemplate::parse("order_update", "de", vec!["#123".into()])
                .unwrap(),
        );
        let id = connector(store, &server.url).send(&delivery).await.unwrap();
        assert_eq!(id.as_deref(), Some("wamid.tpl"));
        assert_eq!(
            server.requests()[0].json(),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "4915112345678",
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "de"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "#123"}]}],
                },
            })
        );
    }

    #[tokio::test]
    async fn a_file_goes_as_the_matching_media_type_with_the_text_as_caption() {
        use crate::channels::platform::test_file;
        for (file, kind) in [
            (test_file("image/png", "a.png"), "image"),
            (test_file("video/mp4", "a.mp4"), "video"),
            (test_file("application/pdf", "invoice.pdf"), "document"),
            (test_file("audio/ogg", "note.ogg"), "document"),
        ] {
            let server = start(200, r#"{"messages":[{"id":"wamid.m"}]}"#).await;
            let (_dir, store, mut delivery) = store_with_delivery(
                ChannelKind::WhatsApp,
                "4915112345678",
                AuthorKind::Agent,
                "Here you go",
            )
            .await;
            delivery.message.attachments = vec![file.clone()];
            connector(store, &server.url).send(&delivery).await.unwrap();
            let body = server.requests()[0].json();
            assert_eq!(body["type"], kind, "{body}");
            assert_eq!(body[kind]["link"], file.url.clone().unwrap().as_str());
            assert_eq!(body[kind]["caption"], "Here you go");
            if kind == "document" {
                assert_eq!(body[kind]["filename"], file.name.clone().unwrap().as_str());
            }
            assert!(body.get("text").is_none());
        }
    }

    #[test]
    fn the_window_closes_a_day_after_the_customers_last_message() {
        use crate::channels::platform::{STANDARD_WINDOW, within_window};
        let hour = 3_600_000;
        let now = Timestamp::from_millis(1_000 * hour);
        let ago = |h: i64| Some(Timestamp::from_millis(now.as_millis() - h * hour));
        assert!(within_window(ago(23), now, STANDARD_WINDOW));
        assert!(!within_window(ago(25), now, STANDARD_WINDOW));
        assert!(!within_window(None, now, STANDARD_WINDOW));
        assert!(OUTSIDE_WINDOW.contains("24-hour window"));
    }
}
