//! Telegram Bot API webhooks: one `Update` per request, turned into [`WebhookEvent`]s.
//!
//! The body is read as loose JSON rather than strict types: Telegram's own documentation
//! samples break its schema (a `forward_from` that is a channel, a chat without `type`, a
//! `from` with a stray `type`), and a strict parser would answer 400 to real deliveries.

use serde_json::{Map, Value};

use super::webhook::{PlatformMessage, WebhookError, WebhookEvent};
use crate::model::Attachment;

/// Message fields that announce a chat event rather than something a person wrote; such
/// messages carry no text of their own and must not become customer messages.
const SERVICE_FIELDS: &[&str] = &[
    "pinned_message",
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "message_auto_delete_timer_changed",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "successful_payment",
    "refunded_payment",
    "users_shared",
    "chat_shared",
    "connected_website",
    "write_access_allowed",
    "proximity_alert_triggered",
    "boost_added",
    "chat_background_set",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
    "giveaway_created",
    "giveaway_completed",
    "video_chat_scheduled",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_participants_invited",
    "web_app_data",
];

/// Parses one Telegram `Update` body.
///
/// A customer's message (text, caption, media, place, contact) becomes a
/// [`WebhookEvent::Message`] whose id is `<chat id>:<message id>`; an edited message becomes
/// a [`WebhookEvent::Edit`]; a button press becomes a message whose payload is the button's
/// data. Channel posts, membership changes, reactions, service messages and update kinds
/// Baton does not know are [`WebhookEvent::Ignored`]. A body that is not JSON is
/// [`WebhookError::Malformed`]; JSON that is not an update is [`WebhookError::Unexpected`].
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let update: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let Some(update) = update.as_object() else {
        return Err(WebhookError::Unexpected(
            "update is not a JSON object".into(),
        ));
    };

    if let Some(message) = update.get("message") {
        return Ok(vec![message_event(obj(message, "message")?)?]);
    }
    if let Some(edited) = update.get("edited_message") {
        return Ok(vec![edit_event(obj(edited, "edited_message")?)?]);
    }
    if let Some(callback) = update.get("callback_query") {
        return Ok(vec![callback_event(obj(callback, "callback_query")?)?]);
    }
    // Channel posts are written by the channel itself, not by a customer of the bot.
    let kind = if update.contains_key("channel_post") {
        "channel_post".to_string()
    } else if update.contains_key("edited_channel_post") {
        "edited_channel_post".to_string()
    } else if update.contains_key("message_reaction")
        || update.contains_key("message_reaction_count")
    {
        "reaction".to_string()
    } else if update.contains_key("my_chat_member") {
        // The bot was blocked, unblocked, added or removed: a membership change, not a message.
        "my_chat_member".to_string()
    } else if update.contains_key("chat_member") {
        "chat_member".to_string()
    } else {
        let other = update
            .keys()
            .find(|k| k.as_str() != "update_id")
            .map_or("empty", String::as_str);
        format!("unknown:{other}")
    };
    Ok(vec![WebhookEvent::Ignored { kind }])
}

/// Splits a message id made by [`parse`] (`<chat id>:<message id>`) back into the chat and
/// message ids Telegram's `sendMessage` needs for `reply_parameters`. `None` for ids that
/// do not name a message, such as a button press's `cb:<id>`.
pub fn reply_target(external_message_id: &str) -> Option<(i64, i64)> {
    // Split at the last colon: the chat id may be negative but never holds a colon.
    let (chat, message) = external_message_id.rsplit_once(':')?;
    Some((chat.parse().ok()?, message.parse().ok()?))
}

fn obj<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, WebhookError> {
    value
        .as_object()
        .ok_or_else(|| WebhookError::Unexpected(format!("{what} is not an object")))
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn int_field(map: &Map<String, Value>, key: &str) -> Option<i64> {
    map.get(key).and_then(Value::as_i64)
}

fn obj_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    map.get(key).and_then(Value::as_object)
}

/// `<chat id>:<message id>`, because Telegram numbers messages per chat.
fn message_key(message: &Map<String, Value>) -> Result<String, WebhookError> {
    let chat = obj_field(message, "chat")
        .and_then(|c| int_field(c, "id"))
        .ok_or_else(|| WebhookError::Unexpected("message without chat.id".into()))?;
    let id = int_field(message, "message_id")
        .ok_or_else(|| WebhookError::Unexpected("message without message_id".into()))?;
    Ok(format!("{chat}:{id}"))
}

/// The author: `from` normally; in groups, anonymous admins and linked channels write as
/// `sender_chat` without a `from`.
fn sender_of(message: &Map<String, Value>) -> Option<&Map<String, Value>> {
    obj_field(message, "from")
        .or_else(|| obj_field(message, "sender_chat"))
        .or_else(|| obj_field(message, "chat"))
}

fn sender_id(user: &Map<String, Value>) -> Result<String, WebhookError> {
    int_field(user, "id")
        .map(|id| id.to_string())
        .ok_or_else(|| WebhookError::Unexpected("sender without numeric id".into()))
}

/// "First Last", else the username, else a chat's title.
fn display_name(user: &Map<String, Value>) -> Option<String> {
    let full = [str_field(user, "first_name"), str_field(user, "last_name")]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !full.is_empty() {
        return Some(full);
    }
    str_field(user, "username")
        .or_else(|| str_field(user, "title"))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn text_of(message: &Map<String, Value>) -> Option<String> {
    str_field(message, "text")
        .or_else(|| str_field(message, "caption"))
        .map(str::to_string)
}

fn message_event(message: &Map<String, Value>) -> Result<WebhookEvent, WebhookError> {
    let text = text_of(message);
    let (attachments, contact_phone) = attachments_of(message);
    if text.is_none() && attachments.is_empty() {
        // Nothing a person wrote: a service notice, or content Baton does not carry (polls,
        // dice, games, stories). Storing it would show an empty customer message.
        let kind = SERVICE_FIELDS
            .iter()
            .find(|f| message.contains_key(**f))
            .map_or_else(
                || "unsupported_message".to_string(),
                |f| format!("service:{f}"),
            );
        return Ok(WebhookEvent::Ignored { kind });
    }
    let external_message_id = message_key(message)?;
    let sender = sender_of(message)
        .ok_or_else(|| WebhookError::Unexpected("message without sender".into()))?;
    let external_sender_id = sender_id(sender)?;
    // A shared contact gives a phone number for the sender only when it is their own card.
    let phone = contact_phone
        .filter(|(user_id, _)| user_id.is_some_and(|u| u.to_string() == external_sender_id));
    let reply_to = obj_field(message, "reply_to_message").and_then(|r| message_key(r).ok());
    Ok(WebhookEvent::Message(PlatformMessage {
        sender_name: display_name(sender),
        external_sender_id,
        phone: phone.map(|(_, p)| p),
        external_message_id,
        timestamp_ms: int_field(message, "date").and_then(|s| s.checked_mul(1000)),
        text,
        attachments,
        payload: None,
        reply_to,
    }))
}

fn edit_event(message: &Map<String, Value>) -> Result<WebhookEvent, WebhookError> {
    let Some(text) = text_of(message) else {
        // Live locations arrive as a stream of edits without text; there is no text to update.
        return Ok(WebhookEvent::Ignored {
            kind: "edit_without_text".into(),
        });
    };
    let external_message_id = message_key(message)?;
    let sender = sender_of(message)
        .ok_or_else(|| WebhookError::Unexpected("edited message without sender".into()))?;
    Ok(WebhookEvent::Edit {
        external_message_id,
        external_sender_id: sender_id(sender)?,
        text,
    })
}

fn callback_event(callback: &Map<String, Value>) -> Result<WebhookEvent, WebhookError> {
    let Some(data) = str_field(callback, "data") else {
        // Game buttons send `game_short_name` instead of data: nothing for a conversation.
        return Ok(WebhookEvent::Ignored {
            kind: "callback_without_data".into(),
        });
    };
    let id = str_field(callback, "id")
        .ok_or_else(|| WebhookError::Unexpected("callback_query without id".into()))?;
    let from = obj_field(callback, "from")
        .ok_or_else(|| WebhookError::Unexpected("callback_query without from".into()))?;
    // The pressed button's label is what the customer saw; the data is often an opaque code.
    let attached = obj_field(callback, "message");
    let button_text = attached.and_then(|m| button_label(m, data));
    Ok(WebhookEvent::Message(PlatformMessage {
        external_sender_id: sender_id(from)?,
        sender_name: display_name(from),
        phone: None,
        // Button presses have their own ids; a redelivery repeats it.
        external_message_id: format!("cb:{id}"),
        // Telegram gives no time for a press; the message's date is when the buttons were sent.
        timestamp_ms: None,
        text: Some(button_text.unwrap_or_else(|| data.to_string())),
        attachments: Vec::new(),
        payload: Some(data.to_string()),
        reply_to: attached.and_then(|m| message_key(m).ok()),
    }))
}

fn button_label(message: &Map<String, Value>, data: &str) -> Option<String> {
    obj_field(message, "reply_markup")?
        .get("inline_keyboard")?
        .as_array()?
        .iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_object)
        .find(|button| str_field(button, "callback_data") == Some(data))
        .and_then(|button| str_field(button, "text"))
        .map(str::to_string)
}

/// The message's files, place and contact; plus a shared contact's `(user_id, phone)`.
fn attachments_of(
    message: &Map<String, Value>,
) -> (Vec<Attachment>, Option<(Option<i64>, String)>) {
    let mut out = Vec::new();
    if let Some(photo) = message
        .get("photo")
        .and_then(Value::as_array)
        .and_then(|sizes| biggest_photo(sizes))
    {
        out.extend(file_attachment(photo, "image/jpeg"));
    }
    // Telegram re-encodes photos to JPEG; other files keep their own type when it says so.
    for (field, default_type) in [
        ("document", "application/octet-stream"),
        ("audio", "audio/mpeg"),
        ("voice", "audio/ogg"),
        ("video", "video/mp4"),
        ("video_note", "video/mp4"),
        ("animation", "video/mp4"),
    ] {
        // An animation also comes as a `document` for old clients: one file, kept once.
        if field == "document" && message.contains_key("animation") {
            continue;
        }
        if let Some(file) = obj_field(message, field) {
            out.extend(file_attachment(file, default_type));
        }
    }
    if let Some(sticker) = obj_field(message, "sticker") {
        let content_type = if sticker.get("is_animated").and_then(Value::as_bool) == Some(true) {
            "application/x-tgsticker"
        } else if sticker.get("is_video").and_then(Value::as_bool) == Some(true) {
            "video/webm"
        } else {
            "image/webp"
        };
        out.extend(file_attachment(sticker, content_type));
    }
    let location = obj_field(message, "location")
        .or_else(|| obj_field(message, "venue").and_then(|v| obj_field(v, "location")));
    if let Some(location) = location {
        let lat = location.get("latitude").and_then(Value::as_f64);
        let lon = location.get("longitude").and_then(Value::as_f64);
        if let (Some(lat), Some(lon)) = (lat, lon) {
            // RFC 5870 `geo:` URI: any client can open it in a map.
            out.push(Attachment {
                content_type: "application/geo+uri".into(),
                url: Some(format!("geo:{lat},{lon}")),
                name: obj_field(message, "venue")
                    .and_then(|v| str_field(v, "title"))
                    .map(str::to_string),
                size: None,
                content_id: None,
                inline: false,
            });
        }
    }
    let mut contact_phone = None;
    if let Some(contact) = obj_field(message, "contact")
        && let Some(phone) = str_field(contact, "phone_number")
    {
        out.push(Attachment {
            content_type: "text/vcard".into(),
            url: Some(format!("tel:{phone}")),
            name: display_name(contact),
            size: None,
            content_id: None,
            inline: false,
        });
        contact_phone = Some((int_field(contact, "user_id"), phone.to_string()));
    }
    (out, contact_phone)
}

/// Telegram lists a photo in several sizes; the largest is the original.
fn biggest_photo(sizes: &[Value]) -> Option<&Map<String, Value>> {
    let area = |p: &Map<String, Value>| {
        let dim = |k| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        (
            p.get("file_size").and_then(Value::as_u64).unwrap_or(0),
            dim("width").saturating_mul(dim("height")),
        )
    };
    sizes
        .iter()
        .filter_map(Value::as_object)
        .filter(|p| str_field(p, "file_id").is_some())
        .max_by_key(|p| area(p))
}

fn file_attachment(file: &Map<String, Value>, default_type: &str) -> Option<Attachment> {
    let file_id = str_field(file, "file_id")?;
    Some(Attachment {
        content_type: str_field(file, "mime_type")
            .filter(|m| m.contains('/'))
            .unwrap_or(default_type)
            .to_string(),
        // Not fetchable as is: the connector resolves it with getFile when the file is needed.
        url: Some(format!("tg-file:{file_id}")),
        name: str_field(file, "file_name").map(str::to_string),
        size: file.get("file_size").and_then(Value::as_u64),
        content_id: None,
        inline: false,
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound: the Telegram Bot API connector.
// ---------------------------------------------------------------------------------------------

/// The Telegram connector: `POST {base}/bot<token>/sendMessage`.
///
/// The bot token is part of the URL path; it is masked in every error this connector returns.
/// The returned id is `<chat id>:<message id>`, the form [`parse`] gives inbound messages.
///
/// Text only for now: attachments of the message are not sent.
pub struct TelegramConnector {
    store: crate::store::SharedStore,
    http: reqwest::Client,
    base_url: String,
    /// The default bot's token, for chats without a bot prefix.
    bot_token: Option<secrecy::SecretString>,
    /// Named bots' tokens, for chats stored as `<bot>/<chat id>`.
    named: std::collections::HashMap<String, secrecy::SecretString>,
}

impl TelegramConnector {
    /// A connector calling the Bot API at `base_url` (e.g. `https://api.telegram.org`) with
    /// the default bot's token.
    pub fn new(
        store: crate::store::SharedStore,
        http: reqwest::Client,
        base_url: String,
        bot_token: secrecy::SecretString,
    ) -> Self {
        Self::with_bots(store, http, base_url, Some(bot_token), Default::default())
    }

    /// A connector for the default bot (if any) and named bots.
    pub fn with_bots(
        store: crate::store::SharedStore,
        http: reqwest::Client,
        base_url: String,
        bot_token: Option<secrecy::SecretString>,
        named: std::collections::HashMap<String, secrecy::SecretString>,
    ) -> Self {
        Self {
            store,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            bot_token,
            named,
        }
    }

    /// The token and chat id for a stored recipient: `<bot>/<chat>` for a named bot's chat,
    /// a bare chat id for the default bot's.
    fn route<'a>(
        &'a self,
        recipient: &'a str,
    ) -> Result<(&'a secrecy::SecretString, Option<&'a str>, &'a str), crate::channels::SendError>
    {
        use crate::channels::SendError;
        match recipient.split_once('/') {
            Some((bot, chat)) => self
                .named
                .get(bot)
                .map(|token| (token, Some(bot), chat))
                .ok_or_else(|| {
                    SendError::Permanent(format!(
                        "the Telegram bot {bot:?} this chat came through is no longer configured"
                    ))
                }),
            None => self
                .bot_token
                .as_ref()
                .map(|token| (token, None, recipient))
                .ok_or_else(|| {
                    SendError::Permanent("the default Telegram bot is not configured".into())
                }),
        }
    }
}

/// Telegram's limit on a caption, in characters.
const MAX_CAPTION: usize = 1024;

/// The Bot API method and body for one message: `sendMessage`, or for a file `sendPhoto`,
/// `sendVideo`, `sendAudio` or `sendDocument` with the text as its caption (Telegram fetches
/// the file from its URL).
fn send_request(
    chat_id: Value,
    message: &crate::model::Message,
) -> Result<(&'static str, Value), crate::channels::SendError> {
    let Some(file) = message.attachments.first() else {
        return Ok((
            "sendMessage",
            serde_json::json!({"chat_id": chat_id, "text": message.text}),
        ));
    };
    if message.text.chars().count() > MAX_CAPTION {
        return Err(crate::channels::SendError::Permanent(format!(
            "Telegram captions are at most {MAX_CAPTION} characters; send the text on its own"
        )));
    }
    let ct = file.content_type.as_str();
    let (method, field) = if ct.starts_with("image/") && ct != "image/gif" && ct != "image/webp" {
        ("sendPhoto", "photo")
    } else if ct.starts_with("video/") {
        ("sendVideo", "video")
    } else if ct == "audio/mpeg" || ct == "audio/mp4" {
        ("sendAudio", "audio")
    } else {
        ("sendDocument", "document")
    };
    let mut body = serde_json::json!({"chat_id": chat_id, "caption": message.text});
    body[field] = file.url.clone().unwrap_or_default().into();
    Ok((method, body))
}

/// Rewrites a named bot's events so their ids name the bot: `<bot>/<chat id>` for senders
/// and `<bot>/<chat id>:<message id>` for messages.
///
/// Telegram's ids are per bot: the same person has the same user id with every bot, and
/// message ids are only unique within a chat, so two bots' messages could collide and be
/// taken for redeliveries. The prefixed sender id is also the address a reply needs, since
/// only the bot the customer wrote to can answer them. The default bot keeps bare ids.
pub fn for_bot(bot: &str, events: Vec<WebhookEvent>) -> Vec<WebhookEvent> {
    let named = |id: String| format!("{bot}/{id}");
    events
        .into_iter()
        .map(|event| match event {
            WebhookEvent::Message(m) => WebhookEvent::Message(PlatformMessage {
                external_sender_id: named(m.external_sender_id),
                external_message_id: named(m.external_message_id),
                reply_to: m.reply_to.map(named),
                ..m
            }),
            WebhookEvent::Edit {
                external_message_id,
                external_sender_id,
                text,
            } => WebhookEvent::Edit {
                external_message_id: named(external_message_id),
                external_sender_id: named(external_sender_id),
                text,
            },
            WebhookEvent::Status {
                external_message_id,
                status,
                error,
            } => WebhookEvent::Status {
                external_message_id: named(external_message_id),
                status,
                error,
            },
            other => other,
        })
        .collect()
}

/// The error of a Bot API answer: `description`, and `retry_after` when Telegram asks to wait.
fn telegram_error_message(body: &Value) -> Option<String> {
    let description = body.get("description")?.as_str()?;
    Some(
        match body
            .pointer("/parameters/retry_after")
            .and_then(Value::as_i64)
        {
            Some(wait) => format!("{description} (retry after {wait} s)"),
            None => description.to_owned(),
        },
    )
}

#[async_trait::async_trait]
impl crate::channels::Connector for TelegramConnector {
    fn kind(&self) -> crate::model::ChannelKind {
        crate::model::ChannelKind::Telegram
    }

    async fn send(
        &self,
        delivery: &crate::store::Delivery,
    ) -> Result<Option<String>, crate::channels::SendError> {
        use super::platform::read_answer;
        use crate::channels::SendError;
        use secrecy::ExposeSecret;
        let message = &delivery.message;
        let recipient = self
            .store
            .channel_recipient(message.conversation_id)
            .await?;
        let (token, bot, chat) = self.route(&recipient.external_id)?;
        // Numeric chat ids go as numbers; anything else (an @channel name) as a string.
        let chat_id: Value = match chat.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => chat.into(),
        };
        let (method, body) = send_request(chat_id, message)?;
        let token = token.expose_secret();
        let result = self
            .http
            .post(format!("{}/bot{}/{method}", self.base_url, token))
            .timeout(super::platform::SEND_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let answer = read_answer("Telegram", result, token, telegram_error_message).await?;
        if answer.get("ok").and_then(Value::as_bool) == Some(false) {
            let reason = telegram_error_message(&answer)
                .unwrap_or_else(|| "the message was not sent".into());
            return Err(SendError::Permanent(format!(
                "Telegram refused the message: {}",
                super::platform::redact(&reason, token)
            )));
        }
        let result = answer.get("result");
        let Some(message_id) = result
            .and_then(|r| r.get("message_id"))
            .and_then(Value::as_i64)
        else {
            return Ok(None);
        };
        let chat = result
            .and_then(|r| r.pointer("/chat/id"))
            .and_then(Value::as_i64)
            .map_or_else(|| chat.to_owned(), |c| c.to_string());
        Ok(Some(match bot {
            Some(bot) => format!("{bot}/{chat}:{message_id}"),
            None => format!("{chat}:{message_id}"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks/telegram")
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixture_dir().join(name)).expect("fixture readable")
    }

    fn one(body: &[u8]) -> WebhookEvent {
        let mut events = parse(body).expect("parses");
        assert_eq!(events.len(), 1, "one event per update");
        events.remove(0)
    }

    /// Expectation keys the parser's output cannot or need not show, with why; any other
    /// key fails the test so a new fixture's expectation is never silently skipped.
    const UNCHECKED_KEYS: &[&str] = &[
        "update_id",                                      // not part of a normalized event
        "update_type",                                    // implied by kind
        "note",                                           // prose
        "sender_username", // sender_name prefers the full name; username is a fallback
        "chat_type",       // not carried by PlatformMessage
        "external_message_id_is_unique_only_within_chat", // why ids are <chat>:<id>
        "timestamp_utc",   // derived from timestamp_raw, which is checked
        "edit_date_utc",   // Edit carries no time
        "forwarded",       // PlatformMessage has no forwarded flag
        "entities",        // formatting, not content
        "message_id",      // callback: the id is cb:<callback id>
        "inline_message_id", // callback on an inline message: no chat message to reply to
        "service",         // checked through the Ignored kind below
        "new_reaction",    // reactions are ignored
        "old_reaction",
        "reacted_to_external_id",
    ];

    fn check_fixture(name: &str, expected: &Value) {
        let body = fixture(&format!("{name}.json"));
        let events = parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = expected["events"].as_array().expect("events[]");
        assert_eq!(events.len(), want.len(), "{name}: event count");
        let disposition = expected["disposition"].as_str().expect("disposition");
        for (got, want) in events.iter().zip(want) {
            let want = want.as_object().expect("event object");
            let s = |k: &str| want.get(k).and_then(Value::as_str);
            for key in want.keys() {
                let checked = [
                    "kind",
                    "external_sender_id",
                    "sender_display_name",
                    "conversation_external_id",
                    "external_message_id",
                    "timestamp_raw",
                    "text",
                    "attachments",
                    "reply_to_external_id",
                    "callback_query_id",
                    "data",
                ];
                assert!(
                    checked.contains(&key.as_str()) || UNCHECKED_KEYS.contains(&key.as_str()),
                    "{name}: expectation key {key:?} is not handled by this test"
                );
            }
            let kind = s("kind").expect("kind");
            match (kind, got) {
                ("message", WebhookEvent::Message(m)) => {
                    assert_eq!(disposition, "inbound_message", "{name}");
                    assert_eq!(
                        Some(m.external_sender_id.as_str()),
                        s("external_sender_id"),
                        "{name}"
                    );
                    assert_eq!(m.sender_name.as_deref(), s("sender_display_name"), "{name}");
                    let chat = s("conversation_external_id").expect("conversation id");
                    let id = s("external_message_id").expect("message id");
                    assert_eq!(m.external_message_id, format!("{chat}:{id}"), "{name}");
                    let raw = want["timestamp_raw"].as_i64().expect("timestamp_raw");
                    assert_eq!(m.timestamp_ms, Some(raw * 1000), "{name}");
                    assert_eq!(m.text.as_deref(), s("text"), "{name}: text");
                    match s("reply_to_external_id") {
                        // The reply's chat comes from reply_to_message.chat, which the
                        // expectation does not name; the message id part must match.
                        Some(target) => {
                            let reply = m.reply_to.as_deref().expect("reply_to set");
                            let (_, msg) = reply_target(reply).expect("reply id parses");
                            assert_eq!(msg.to_string(), target, "{name}: reply target");
                        }
                        None => assert_eq!(m.reply_to, None, "{name}: no reply"),
                    }
                    check_attachments(name, &m.attachments, &want["attachments"]);
                    assert_eq!(m.payload, None, "{name}");
                }
                (
                    "edit",
                    WebhookEvent::Edit {
                        external_message_id,
                        external_sender_id,
                        text,
                    },
                ) => {
                    assert_eq!(disposition, "edit", "{name}");
                    let chat = s("conversation_external_id").expect("conversation id");
                    let id = s("external_message_id").expect("message id");
                    assert_eq!(external_message_id, &format!("{chat}:{id}"), "{name}");
                    assert_eq!(
                        Some(external_sender_id.as_str()),
                        s("external_sender_id"),
                        "{name}"
                    );
                    assert_eq!(Some(text.as_str()), s("text"), "{name}");
                    assert!(
                        want["attachments"].as_array().is_none_or(Vec::is_empty),
                        "{name}"
                    );
                }
                ("callback", WebhookEvent::Message(m)) => {
                    assert_eq!(disposition, "postback", "{name}");
                    assert_eq!(
                        Some(m.external_sender_id.as_str()),
                        s("external_sender_id"),
                        "{name}"
                    );
                    assert_eq!(m.sender_name.as_deref(), s("sender_display_name"), "{name}");
                    let id = s("callback_query_id").expect("callback id");
                    assert_eq!(m.external_message_id, format!("cb:{id}"), "{name}");
                    assert_eq!(m.payload.as_deref(), s("data"), "{name}: payload");
                    assert_eq!(
                        m.text.as_deref(),
                        s("data"),
                        "{name}: text falls back to data"
                    );
                }
                ("service", WebhookEvent::Ignored { kind }) => {
                    assert_eq!(disposition, "ignore", "{name}");
                    let service = s("service").expect("service name");
                    assert_eq!(kind, &format!("service:{service}"), "{name}");
                }
                ("reaction", WebhookEvent::Ignored { kind }) => {
                    assert!(matches!(disposition, "reaction" | "ignore"), "{name}");
                    assert_eq!(kind, "reaction", "{name}");
                }
                ("ignore", WebhookEvent::Ignored { kind }) => {
                    assert_eq!(disposition, "ignore", "{name}");
                    assert_eq!(Some(kind.as_str()), s("update_type"), "{name}");
                }
                (kind, got) => panic!("{name}: expected kind {kind}, got {got:?}"),
            }
        }
    }

    fn check_attachments(name: &str, got: &[Attachment], want: &Value) {
        let want = want.as_array().map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.len(), want.len(), "{name}: attachment count");
        for (a, w) in got.iter().zip(want) {
            let w = w.as_object().expect("attachment object");
            for key in w.keys() {
                assert!(
                    matches!(
                        key.as_str(),
                        "type"
                            | "telegram_type"
                            | "file_id"
                            | "mime_type"
                            | "file_size"
                            | "file_name"
                    ),
                    "{name}: attachment key {key:?} is not handled by this test"
                );
            }
            let file_id = w["file_id"].as_str().expect("file_id");
            assert_eq!(a.url, Some(format!("tg-file:{file_id}")), "{name}");
            if let Some(mime) = w.get("mime_type").and_then(Value::as_str) {
                assert_eq!(a.content_type, mime, "{name}");
            }
            let family = match w["type"].as_str().expect("type") {
                "audio" => "audio/",
                "image" => "image/",
                "video" => "video/",
                "file" => "",
                other => panic!("{name}: attachment type {other:?} is not handled"),
            };
            assert!(
                a.content_type.starts_with(family),
                "{name}: {}",
                a.content_type
            );
            assert_eq!(
                a.size,
                w.get("file_size").and_then(Value::as_u64),
                "{name}: size"
            );
            assert_eq!(
                a.name.as_deref(),
                w.get("file_name").and_then(Value::as_str),
                "{name}"
            );
        }
    }

    #[test]
    fn every_fixture_matches_its_expectation() {
        let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".expected.json").map(str::to_string))
            .collect();
        names.sort();
        assert!(names.len() >= 14, "fixtures present: {names:?}");
        for name in &names {
            let expected: Value =
                serde_json::from_slice(&fixture(&format!("{name}.expected.json"))).expect("json");
            check_fixture(name, &expected);
        }
    }

    #[test]
    fn an_edited_message_becomes_an_edit_of_the_chat_scoped_id() {
        let event = one(&fixture("doc_edited_message.json"));
        assert_eq!(
            event,
            WebhookEvent::Edit {
                external_message_id: "1111111:1365".into(),
                external_sender_id: "1111111".into(),
                text: "Edited text".into(),
            }
        );
    }

    #[test]
    fn a_callback_query_carries_its_data_as_payload() {
        let WebhookEvent::Message(m) = one(&fixture("doc_callback_query.json")) else {
            panic!("callback is a message");
        };
        assert_eq!(m.payload.as_deref(), Some("Data from button callback"));
        assert_eq!(m.external_message_id, "cb:4382bfdwdsb323b2d9");
        assert_eq!(m.reply_to, None);
    }

    #[test]
    fn a_callback_query_shows_the_button_label_and_replies_to_its_message() {
        let body =
            br#"{"update_id":1,"callback_query":{"id":"77","from":{"id":5,"first_name":"Ann"},
            "data":"opt_b","message":{"message_id":9,"date":1,"chat":{"id":5,"type":"private"},
            "text":"Pick","reply_markup":{"inline_keyboard":[[{"text":"A","callback_data":"opt_a"},
            {"text":"Option B","callback_data":"opt_b"}]]}}}}"#;
        let WebhookEvent::Message(m) = one(body) else {
            panic!("message")
        };
        assert_eq!(m.text.as_deref(), Some("Option B"));
        assert_eq!(m.payload.as_deref(), Some("opt_b"));
        assert_eq!(m.reply_to.as_deref(), Some("5:9"));
    }

    #[test]
    fn a_reply_points_at_the_replied_message_in_its_chat() {
        let WebhookEvent::Message(m) = one(&fixture("doc_message_with_reply.json")) else {
            panic!("message");
        };
        assert_eq!(m.reply_to.as_deref(), Some("1111112:1334"));
        assert_eq!(reply_target("1111112:1334"), Some((1111112, 1334)));
        assert_eq!(
            reply_target("-1001293752024:134545"),
            Some((-1001293752024, 134545))
        );
        assert_eq!(reply_target("cb:4382"), None);
        assert_eq!(reply_target("1365"), None);
    }

    #[test]
    fn a_photo_with_caption_keeps_the_biggest_size_and_the_caption() {
        let body = br#"{"update_id":2,"message":{"message_id":3,"date":10,"chat":{"id":-42,"type":"group"},
            "from":{"id":8,"username":"bob"},"caption":"look",
            "photo":[{"file_id":"small","width":90,"height":60,"file_size":900},
                     {"file_id":"big","width":1280,"height":853,"file_size":90000},
                     {"file_id":"mid","width":320,"height":213,"file_size":9000}]}}"#;
        let WebhookEvent::Message(m) = one(body) else {
            panic!("message")
        };
        assert_eq!(m.text.as_deref(), Some("look"));
        assert_eq!(m.sender_name.as_deref(), Some("bob"));
        assert_eq!(m.external_message_id, "-42:3");
        assert_eq!(m.timestamp_ms, Some(10_000));
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].url.as_deref(), Some("tg-file:big"));
        assert_eq!(m.attachments[0].content_type, "image/jpeg");
    }

    #[test]
    fn voice_sticker_location_and_own_contact_become_attachments() {
        let body = br#"{"update_id":3,"message":{"message_id":4,"date":1,"chat":{"id":8},"from":{"id":8,"first_name":"Bo"},
            "voice":{"file_id":"v1","duration":2,"mime_type":"audio/ogg","file_size":100},
            "sticker":{"file_id":"s1","is_animated":false,"is_video":true,"width":1,"height":1},
            "location":{"latitude":52.5,"longitude":13.25},
            "contact":{"phone_number":"+4915112345678","first_name":"Bo","user_id":8}}}"#;
        let WebhookEvent::Message(m) = one(body) else {
            panic!("message")
        };
        let types: Vec<&str> = m
            .attachments
            .iter()
            .map(|a| a.content_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "audio/ogg",
                "video/webm",
                "application/geo+uri",
                "text/vcard"
            ]
        );
        assert_eq!(m.attachments[2].url.as_deref(), Some("geo:52.5,13.25"));
        assert_eq!(m.attachments[3].url.as_deref(), Some("tel:+4915112345678"));
        assert_eq!(m.phone.as_deref(), Some("+4915112345678"));
        assert_eq!(m.text, None);
    }

    #[test]
    fn channel_posts_membership_changes_and_reactions_are_ignored() {
        for (body, kind) in [
            (&br#"{"update_id":1,"channel_post":{"message_id":1,"chat":{"id":-1},"date":1,"text":"x"}}"#[..], "channel_post"),
            (&fixture("teloxide_my_chat_member.json")[..], "my_chat_member"),
            (&fixture("teloxide_message_reaction.json")[..], "reaction"),
            (&fixture("teloxide_pinned_message_service.json")[..], "service:pinned_message"),
        ] {
            assert_eq!(one(body), WebhookEvent::Ignored { kind: kind.into() });
        }
    }

    #[test]
    fn unknown_update_types_are_ignored_not_errors() {
        let body = br#"{"update_id":5,"poll_answer":{"poll_id":"1","option_ids":[0]}}"#;
        assert_eq!(
            one(body),
            WebhookEvent::Ignored {
                kind: "unknown:poll_answer".into()
            }
        );
        assert_eq!(
            one(br#"{"update_id":5}"#),
            WebhookEvent::Ignored {
                kind: "unknown:empty".into()
            }
        );
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(matches!(
            parse(b"{\"update_id\":1,"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(parse(b""), Err(WebhookError::Malformed(_))));
        assert!(matches!(parse(b"[1,2]"), Err(WebhookError::Unexpected(_))));
        assert!(matches!(
            parse(br#"{"message":{"text":"no chat"}}"#),
            Err(WebhookError::Unexpected(_))
        ));
    }

    use crate::channels::webhook::fuzz::Rng;

    fn random_json(rng: &mut Rng, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "update_id",
            "message",
            "edited_message",
            "callback_query",
            "chat",
            "id",
            "message_id",
            "from",
            "date",
            "text",
            "caption",
            "photo",
            "document",
            "file_id",
            "file_size",
            "data",
            "reply_to_message",
            "reply_markup",
            "inline_keyboard",
            "callback_data",
            "location",
            "latitude",
            "longitude",
            "contact",
            "phone_number",
            "user_id",
            "sticker",
            "first_name",
        ];
        crate::channels::webhook::fuzz::random_json(rng, depth, KEYS, KEYS)
    }

    #[test]
    fn arbitrary_bytes_and_random_json_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = parse(&bytes);
            let value = random_json(&mut rng, 5);
            let _ = parse(value.to_string().as_bytes());
            // Wrapped in an update so the message paths are reached often.
            let wrapped = serde_json::json!({"update_id": 1, "message": value.clone()});
            let _ = parse(wrapped.to_string().as_bytes());
            let wrapped = serde_json::json!({"callback_query": value});
            let _ = parse(wrapped.to_string().as_bytes());
        }
        // Fixtures cut short at every length must fail cleanly, not panic.
        let body = fixture("teloxide_supergroup_reply_command.json");
        for end in 0..body.len() {
            let _ = parse(&body[..end]);
        }
    }
}

#[cfg(test)]
mod connector_tests {
    use secrecy::SecretString;

    use super::*;
    use crate::channels::platform::stand_in::{start, store_with_delivery};
    use crate::channels::{Connector, SendError};
    use crate::model::{AuthorKind, ChannelKind};

    const TOKEN: &str = "123456:ABC-secret";

    fn connector(store: crate::store::SharedStore, url: &str) -> TelegramConnector {
        TelegramConnector::new(
            store,
            reqwest::Client::new(),
            url.to_owned(),
            SecretString::from(TOKEN),
        )
    }

    #[tokio::test]
    async fn a_text_reply_is_sent_and_named_like_inbound_messages() {
        let server = start(
            200,
            r#"{"ok":true,"result":{"message_id":77,"chat":{"id":4242,"type":"private"},"date":1700000000,"text":"Hi"}}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Agent, "Hi").await;
        let id = connector(store, &server.url).send(&delivery).await.unwrap();
        assert_eq!(id.as_deref(), Some("4242:77"));
        assert_eq!(reply_target(id.as_deref().unwrap()), Some((4242, 77)));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/bot{TOKEN}/sendMessage"));
        assert_eq!(r.json(), serde_json::json!({"chat_id": 4242, "text": "Hi"}));
    }

    #[tokio::test]
    async fn a_named_bots_chat_is_answered_with_that_bots_token() {
        let server = start(
            200,
            r#"{"ok":true,"result":{"message_id":9,"chat":{"id":4242,"type":"private"},"date":1700000000,"text":"Hi"}}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "sales/4242", AuthorKind::Agent, "Hi").await;
        let connector = TelegramConnector::with_bots(
            store,
            reqwest::Client::new(),
            server.url.clone(),
            Some(SecretString::from(TOKEN)),
            [("sales".to_string(), SecretString::from("999:sales-token"))].into(),
        );
        let id = connector.send(&delivery).await.unwrap();
        assert_eq!(id.as_deref(), Some("sales/4242:9"));
        let r = &server.requests()[0];
        assert_eq!(r.path, "/bot999:sales-token/sendMessage");
        assert_eq!(r.json(), serde_json::json!({"chat_id": 4242, "text": "Hi"}));
    }

    #[tokio::test]
    async fn a_file_goes_by_url_through_the_matching_send_method_with_a_caption() {
        use crate::channels::platform::test_file;
        for (file, method, field) in [
            (test_file("image/jpeg", "a.jpg"), "sendPhoto", "photo"),
            (test_file("video/mp4", "a.mp4"), "sendVideo", "video"),
            (test_file("audio/mpeg", "a.mp3"), "sendAudio", "audio"),
            (
                test_file("application/pdf", "a.pdf"),
                "sendDocument",
                "document",
            ),
        ] {
            let server = start(
                200,
                r#"{"ok":true,"result":{"message_id":5,"chat":{"id":4242}}}"#,
            )
            .await;
            let (_dir, store, mut delivery) =
                store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Agent, "Invoice")
                    .await;
            delivery.message.attachments = vec![file.clone()];
            connector(store, &server.url).send(&delivery).await.unwrap();
            let r = &server.requests()[0];
            assert_eq!(r.path, format!("/bot{TOKEN}/{method}"));
            let mut want = serde_json::json!({"chat_id": 4242, "caption": "Invoice"});
            want[field] = file.url.clone().unwrap().into();
            assert_eq!(r.json(), want);
        }
    }

    #[tokio::test]
    async fn a_caption_longer_than_telegram_takes_fails_with_the_reason_not_truncated() {
        let server = start(200, "{}").await;
        let long = "x".repeat(1025);
        let (_dir, store, mut delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Agent, &long).await;
        delivery.message.attachments =
            vec![crate::channels::platform::test_file("image/png", "a.png")];
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("1024")),
            "{err}"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_chat_of_a_bot_no_longer_configured_fails_for_good() {
        let server = start(200, "{}").await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "gone/4242", AuthorKind::Agent, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("no longer configured")),
            "{err}"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_server_error_is_retryable() {
        let server = start(
            502,
            r#"{"ok":false,"error_code":502,"description":"Bad Gateway"}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Retryable(m) if m.contains("502")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn flood_control_is_retried_no_sooner_than_telegram_asks() {
        let server = start(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Throttled { retry_after, .. } if retry_after.as_secs() == 5),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_with_telegrams_description() {
        let server = start(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("chat not found")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_bot_token_never_appears_in_errors() {
        // The token is in the URL path; a connection error must not show it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Telegram, "4242", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &format!("http://127.0.0.1:{port}"))
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Retryable(_)), "{err}");
        assert!(!err.to_string().contains(TOKEN), "{err}");
        assert!(!err.to_string().contains("ABC-secret"), "{err}");
    }
}
