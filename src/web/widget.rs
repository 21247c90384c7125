//! The web chat widget's API under `/widget/v1`. Each conversation has its own random token,
//! returned once at creation; the widget sends it as `Authorization: Bearer` (or `?token=` for
//! the event stream, which browsers open without custom headers).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_lab::sse;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, mpsc};

use super::auth::bearer_token;
use super::error::ApiError;
use crate::model::{
    ChannelKind, ConversationId, EmailAddress, Identity, Message, MessageId, MessageText,
};
use crate::services::{Services, hash_token, new_token};
use crate::store::{InboundMessage, SenderProfile};

/// Registers the widget routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/widget/v1")
            .route("/conversations", web::post().to(start))
            .route("/conversations/{id}/messages", web::post().to(post_message))
            .route("/conversations/{id}/messages", web::get().to(history))
            .route("/conversations/{id}/events", web::get().to(events)),
    );
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartIn {
    name: Option<String>,
    email: Option<String>,
}

#[derive(Serialize)]
struct Started {
    conversation_id: ConversationId,
    token: String,
}

async fn start(services: web::Data<Services>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let body: StartIn = super::optional_json(&body)?;
    let name = body
        .name
        .map(|n| n.trim().chars().take(200).collect::<String>())
        .filter(|n| !n.is_empty());
    let email = body
        .email
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .map(EmailAddress::parse)
        .transpose()?;
    // Each widget session is a visitor of its own; the email (if given) links it to the
    // customer's other channels.
    let visitor = new_token("visitor");
    let token = new_token("baton_chat");
    let conversation = services
        .store
        .create_web_conversation(
            SenderProfile {
                identity: Identity::channel(ChannelKind::WebChat, &visitor)?,
                display_name: name,
                email,
                phone: None,
            },
            hash_token(&token),
        )
        .await?;
    Ok(HttpResponse::Created().json(Started {
        conversation_id: conversation.id,
        token,
    }))
}

/// Checks the conversation's token in constant time.
async fn authorize(
    services: &Services,
    req: &HttpRequest,
    id: ConversationId,
) -> Result<(), ApiError> {
    let token = request_token(req).ok_or(ApiError::Unauthorized)?;
    let stored = services
        .store
        .widget_token_hash(id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    check_token(&token, &stored)
}

/// The visitor's token: the bearer header, or `?token=` (EventSource cannot set headers).
fn request_token(req: &HttpRequest) -> Option<String> {
    bearer_token(req).or_else(|| {
        web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().token)
    })
}

/// Compares a presented token with the stored hash in constant time.
fn check_token(token: &str, stored: &str) -> Result<(), ApiError> {
    if bool::from(hash_token(token).as_bytes().ct_eq(stored.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    text: String,
    /// The widget's own id for the message, so a retried POST is stored once.
    client_message_id: Option<String>,
}

/// A widget message as the edge accepts it: its text and the widget's own id for it.
#[derive(Debug)]
pub struct WidgetMessage {
    /// What the visitor wrote.
    pub text: MessageText,
    /// The widget's id for the message (a retried POST is stored once), 1 to 128 characters.
    pub client_message_id: Option<String>,
}

/// Parses a widget message body (JSON `{"text", "client_message_id"?}`) into domain values.
pub fn parse_message(body: &[u8]) -> Result<WidgetMessage, ApiError> {
    let body: MessageIn = super::json_body(body)?;
    if let Some(c) = &body.client_message_id
        && (c.is_empty() || c.len() > 128)
    {
        return Err(ApiError::BadRequest(
            "client_message_id must be 1 to 128 characters".into(),
        ));
    }
    Ok(WidgetMessage {
        text: MessageText::parse(&body.text)?,
        client_message_id: body.client_message_id,
    })
}

#[derive(Serialize)]
struct Accepted {
    conversation_id: ConversationId,
    message_id: MessageId,
    duplicate: bool,
}

async fn post_message(
    req: HttpRequest,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = path.parse()?;
    let token = request_token(&req).ok_or(ApiError::Unauthorized)?;
    // One read for the token check and the sender: this is the widget's hot path.
    let (stored, identity) = services
        .store
        .widget_visitor(id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    check_token(&token, &stored)?;
    let body = parse_message(&body)?;
    // Scoped to the conversation, so one visitor cannot collide with another's ids.
    let external_id = body.client_message_id.map(|c| format!("{id}:{c}"));
    let receipt = services
        .pipeline
        .accept(InboundMessage {
            channel: ChannelKind::WebChat,
            sender: SenderProfile {
                identity,
                display_name: None,
                email: None,
                phone: None,
            },
            conversation_id: Some(id),
            external_id,
            text: body.text,
            html: None,
            attachments: Vec::new(),
            sent_at: None,
        })
        .await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        conversation_id: receipt.conversation_id,
        message_id: receipt.message_id,
        duplicate: receipt.duplicate,
    }))
}

#[derive(Deserialize)]
struct HistoryQuery {
    after: Option<String>,
}

#[derive(Serialize)]
struct History {
    messages: Vec<Message>,
}

async fn history(
    req: HttpRequest,
    services: web::Data<Services>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = path.parse()?;
    authorize(&services, &req, id).await?;
    let after = query
        .after
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<MessageId>)
        .transpose()?;
    let messages = services.store.messages(id, after, 500).await?;
    Ok(HttpResponse::Ok().json(History { messages }))
}

fn sse_event(m: &Message) -> Option<sse::Event> {
    let data = sse::Data::new_json(m)
        .ok()?
        .id(m.id.to_string())
        .event("message");
    Some(sse::Event::Data(data))
}

/// A live stream of the conversation's messages. On connect it first replays every stored
/// message after `Last-Event-ID` (or `?after=`), so a reconnecting widget misses nothing;
/// messages carry their id, so the widget drops any it already shows.
async fn events(
    req: HttpRequest,
    services: web::Data<Services>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<impl Responder, ApiError> {
    let id: ConversationId = path.parse()?;
    authorize(&services, &req, id).await?;
    let last_seen = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.after.clone())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<MessageId>())
        .transpose()?;
    // Subscribe before reading the backlog: a message stored in between arrives twice at
    // worst (the widget dedups by id), never zero times.
    let mut live = services.hub.subscribe(id);
    let backlog = services.store.messages(id, last_seen, 500).await?;
    let (tx, rx) = mpsc::channel::<sse::Event>(64);
    tokio::spawn(async move {
        for m in &backlog {
            if let Some(ev) = sse_event(m)
                && tx.send(ev).await.is_err()
            {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                // The widget went away: stop holding its subscription.
                _ = tx.closed() => return,
            };
            match next {
                Ok(m) => {
                    if let Some(ev) = sse_event(&m)
                        && tx.send(ev).await.is_err()
                    {
                        return;
                    }
                }
                // Fell behind: tell the widget to reconnect, which replays from its last id.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(Duration::from_secs(15))
        .with_retry_duration(Duration::from_secs(2)))
}
