//! What the messaging-platform connectors (Messenger/Instagram, WhatsApp, Telegram, Twilio)
//! share: the reply windows, and turning a platform API's answer into a result or a
//! [`SendError`](crate::channels::SendError) without ever showing a token.

use serde_json::Value;

use crate::model::{AuthorKind, ChannelKind, Timestamp};

/// How long one send may take before it counts as a (retryable) failure.
pub(crate) const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The customer-service window of Meta's platforms: replies of any kind within 24 hours of the
/// customer's last message.
pub const STANDARD_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Messenger's and Instagram's `HUMAN_AGENT` tag: a person may answer up to 7 days after the
/// customer's last message.
pub const HUMAN_AGENT_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// Whether `now` is within `window` of the customer's last message. No message at all is
/// outside every window. A `last` in the future (clock skew) counts as within.
pub fn within_window(last: Option<Timestamp>, now: Timestamp, window: std::time::Duration) -> bool {
    match last {
        Some(last) => now.millis_since(last) <= window.as_millis() as i64,
        None => false,
    }
}

/// `text` with `secret` masked (no-op for an empty secret).
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    }
}

/// The first 200 characters of a response body, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

/// Turns the outcome of a platform API call into its JSON body (2xx) or a [`SendError`]:
/// network errors, timeouts, 5xx and 429 are retryable; other statuses are permanent and
/// carry the platform's own error message (`error_message` reads it from the JSON body).
/// `secret` is masked in every message (and reqwest's errors are stripped of their URL).
pub(crate) async fn read_answer(
    platform: &str,
    result: Result<reqwest::Response, reqwest::Error>,
    secret: &str,
    error_message: fn(&Value) -> Option<String>,
) -> Result<Value, crate::channels::SendError> {
    use crate::channels::SendError;
    let response = result.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "unreachable"
        };
        SendError::Retryable(redact(
            &format!(
                "{platform} {what}: {}",
                crate::telemetry::error_chain(&e.without_url())
            ),
            secret,
        ))
    })?;
    let status = response.status();
    let retry_after_header = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = response.text().await.map_err(|e| {
        SendError::Retryable(redact(
            &format!("{platform}: reading the answer failed: {}", e.without_url()),
            secret,
        ))
    })?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(json);
    }
    let short = redact(&excerpt(&body), secret);
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let why = format!("{platform} answered {status}: {short}");
        // Telegram says how long to wait in the body, HTTP in the Retry-After header (in
        // seconds; its date form is rare for APIs and falls back to the backoff).
        let wait = json
            .pointer("/parameters/retry_after")
            .and_then(Value::as_u64)
            .or(retry_after_header);
        return Err(match wait {
            Some(secs) => SendError::Throttled {
                why,
                retry_after: std::time::Duration::from_secs(secs),
            },
            None => SendError::Retryable(why),
        });
    }
    if status.is_client_error() {
        let reason = error_message(&json)
            .map(|m| redact(&m, secret))
            .unwrap_or(short);
        return Err(SendError::Permanent(format!(
            "{platform} refused the message ({status}): {reason}"
        )));
    }
    Err(SendError::Retryable(format!(
        "{platform} answered {status}: {short}"
    )))
}

/// Whether replies on this channel are bound to a window after the customer's last message.
pub fn has_reply_window(channel: ChannelKind) -> bool {
    matches!(
        channel,
        ChannelKind::WhatsApp | ChannelKind::Messenger | ChannelKind::Instagram
    )
}

/// Whether the platform takes a reply now, by the time since the customer last wrote:
/// `Ok(None)` as a plain reply, `Ok(Some(tag))` with a message tag (Messenger's `HUMAN_AGENT`),
/// `Err(why)` not at all. Channels without a reply window always take one.
pub fn reply_window(
    channel: ChannelKind,
    last_inbound: Option<Timestamp>,
    now: Timestamp,
    author: AuthorKind,
) -> Result<Option<&'static str>, String> {
    match channel {
        ChannelKind::WhatsApp if !within_window(last_inbound, now, STANDARD_WINDOW) => {
            Err(super::whatsapp::OUTSIDE_WINDOW.to_owned())
        }
        ChannelKind::Messenger | ChannelKind::Instagram => {
            super::meta::messaging_tag(last_inbound, now, author)
        }
        _ => Ok(None),
    }
}

/// A file sent by URL, for connector tests.
#[cfg(test)]
pub(crate) fn test_file(content_type: &str, name: &str) -> crate::model::Attachment {
    crate::model::Attachment {
        content_type: content_type.into(),
        url: Some(format!("https://files.example.com/{name}")),
        name: Some(name.into()),
        size: None,
        content_id: None,
        inline: false,
    }
}

/// A stand-in HTTP server for connector tests: answers every request with one canned status
/// and body, and records what it got.
#[cfg(test)]
pub(crate) mod stand_in {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One request as received.
    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        pub path: String,
        /// Header names lower-cased.
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }
    }

    /// The running server: its base URL and the requests it got.
    pub struct StandIn {
        pub url: String,
        pub requests: Arc<Mutex<Vec<Request>>>,
    }

    impl StandIn {
        pub fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Starts a server on 127.0.0.1 answering `status` with the JSON `body`.
    pub async fn start(status: u16, body: &str) -> StandIn {
        start_with_headers(status, &[], body).await
    }

    /// Like [`start`], with extra response headers.
    pub async fn start_with_headers(status: u16, headers: &[(&str, &str)], body: &str) -> StandIn {
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let body = body.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, content_length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break (None, 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len = head
                            .lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.trim().parse().ok())
                            .unwrap_or(0usize);
                        break (Some(i + 4), len);
                    }
                };
                let Some(head_end) = head_end else { continue };
                while buf.len() < head_end + content_length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end - 4]).to_string();
                let mut lines = head.lines();
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_owned();
                let path = first.next().unwrap_or_default().to_owned();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let req_body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                seen.lock().unwrap().push(Request {
                    method,
                    path,
                    headers,
                    body: req_body,
                });
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        StandIn { url, requests }
    }

    /// Moves the customer's messages in the store at `dir` `hours` into the past (Baton
    /// stamps them with its own receive time, so only the database can make them old).
    pub async fn backdate_inbound(dir: &tempfile::TempDir, hours: i64) {
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE messages SET created_at = created_at - ? WHERE direction = 'in'")
            .bind(hours * 3_600_000)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// A temporary SQLite store holding one conversation on `kind` with a customer whose id
    /// there is `external_id`, and an outbound message of `author` in it, as a [`Delivery`].
    pub async fn store_with_delivery(
        kind: crate::model::ChannelKind,
        external_id: &str,
        author: crate::model::AuthorKind,
        text: &str,
    ) -> (
        tempfile::TempDir,
        crate::store::SharedStore,
        crate::store::Delivery,
    ) {
        use crate::model::{Identity, MessageText};
        use crate::store::{InboundMessage, OutboundMessage, SenderProfile, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store: crate::store::SharedStore = Arc::new(
            SqliteStore::open(&dir.path().join("t.sqlite3"))
                .await
                .unwrap(),
        );
        let receipt = store
            .ingest(InboundMessage {
                channel: kind,
                sender: SenderProfile {
                    identity: Identity::channel(kind, external_id).unwrap(),
                    display_name: None,
                    email: None,
                    phone: None,
                },
                conversation_id: None,
                external_id: Some("in-1".into()),
                text: MessageText::parse("hello").unwrap(),
                html: None,
                attachments: vec![],
                sent_at: None,
            })
            .await
            .unwrap();
        let mut message = store
            .append_outbound(
                receipt.conversation_id,
                OutboundMessage::text(
                    crate::model::AuthorKind::Bot,
                    None,
                    MessageText::parse(text).unwrap(),
                ),
            )
            .await
            .unwrap();
        message.author_kind = author;
        let delivery = crate::store::Delivery {
            message,
            channel: kind,
            attempts: 0,
            template: None,
        };
        (dir, store, delivery)
    }
}
