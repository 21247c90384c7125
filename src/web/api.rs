//! The JSON API under `/api/v1`: the generic API channel, conversations, handoffs, agents.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::accounts::audit;
use super::auth::Caller;
use super::error::ApiError;
use crate::handoff::Escalation;
use crate::handoff::engine::{QueueConfig, TransferTarget};
use crate::model::{
    Agent, AgentId, Attachment, ChannelKind, Conversation, ConversationId, ConversationStatus,
    Customer, EmailAddress, Handoff, HandoffId, HandoffReason, HandoffStatus, Identity, Message,
    MessageTemplate, MessageText, PhoneNumber, Presence, Priority, Skill, Team, Timestamp,
};
use crate::services::{Services, hash_token, new_token};
use crate::store::{
    AgentReply, ConversationFilter, InboundMessage, NewAgent, Role, SenderProfile, TicketStep,
};

/// Registers the API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/messages", web::post().to(post_message))
            .route("/conversations", web::get().to(list_conversations))
            .route("/conversations/{id}", web::get().to(get_conversation))
            .route(
                "/conversations/{id}/handoff",
                web::post().to(request_handoff),
            )
            .route("/conversations/{id}/messages", web::post().to(agent_reply))
            .route("/handoffs", web::get().to(list_handoffs))
            .route("/handoffs/{id}", web::get().to(get_handoff))
            .route("/handoffs/{id}/{action}", web::post().to(ticket_action))
            .route("/agents", web::post().to(create_agent))
            .route("/agents", web::get().to(list_agents))
            .route("/agents/{id}/presence", web::put().to(set_presence))
            .route("/customers/{id}/tags", web::put().to(set_customer_tags))
            .route("/queues", web::get().to(list_queues))
            .route("/queues/{team}", web::put().to(put_queue))
            .route("/agents/{id}", web::patch().to(update_agent))
            .route("/escalation-rules", web::get().to(get_rules))
            .route("/escalation-rules", web::put().to(put_rules))
            .route("/attachments/{id}", web::get().to(get_attachment))
            .route("/event-dead-letters", web::get().to(list_dead_letters))
            .route(
                "/event-dead-letters/replay",
                web::post().to(replay_dead_letters),
            ),
    );
}

fn parse_id<T: std::str::FromStr<Err = crate::model::ParseError>>(
    raw: &str,
) -> Result<T, ApiError> {
    Ok(raw.parse::<T>()?)
}

/// Optional text fields: trimmed, empty means absent, bounded.
fn optional_text(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most {max} bytes without control characters"
        )));
    }
    Ok(Some(v.to_owned()))
}

// --- the generic API channel -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderIn {
    external_id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    sender: SenderIn,
    external_id: Option<String>,
    text: String,
    timestamp: Option<String>,
}

#[derive(Serialize)]
struct Accepted {
    conversation_id: ConversationId,
    message_id: crate::model::MessageId,
    duplicate: bool,
}

async fn post_message(
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let body: MessageIn = super::json_body(&body)?;
    let sender = SenderProfile {
        identity: Identity::channel(ChannelKind::Api, &body.sender.external_id)?,
        display_name: optional_text("sender.name", body.sender.name, 200)?,
        email: body
            .sender
            .email
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()?,
        phone: body
            .sender
            .phone
            .as_deref()
            .map(PhoneNumber::parse)
            .transpose()?,
    };
    let external_id = optional_text("external_id", body.external_id, 256)?;
    let inbound = InboundMessage {
        channel: ChannelKind::Api,
        sender,
        conversation_id: None,
        external_id,
        text: MessageText::parse(&body.text)?,
        html: None,
        attachments: Vec::new(),
        sent_at: body
            .timestamp
            .as_deref()
            .map(Timestamp::parse_rfc3339)
            .transpose()?,
    };
    let receipt = services.pipeline.accept(inbound).await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        conversation_id: receipt.conversation_id,
        message_id: receipt.message_id,
        duplicate: receipt.duplicate,
    }))
}

// --- conversations ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ListQuery {
    channel: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ConversationPage {
    conversations: Vec<Conversation>,
    next_cursor: Option<String>,
}

fn encode_cursor(c: &Conversation) -> String {
    format!("{}_{}", c.created_at.as_millis(), c.id)
}

fn decode_cursor(s: &str) -> Result<(Timestamp, ConversationId), ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    let (ms, id) = s.split_once('_').ok_or_else(bad)?;
    Ok((
        Timestamp::from_millis(ms.parse().map_err(|_| bad())?),
        id.parse().map_err(|_| bad())?,
    ))
}

async fn list_conversations(
    caller: Caller,
    services: web::Data<Services>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let filter = ConversationFilter {
        channel: q
            .channel
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::parse::<ChannelKind>)
            .transpose()?,
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::parse::<ConversationStatus>)
            .transpose()?,
        before: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    };
    let conversations = services.store.list_conversations(filter).await?;
    let next_cursor = (conversations.len() == limit as usize)
        .then(|| conversations.last().map(encode_cursor))
        .flatten();
    Ok(HttpResponse::Ok().json(ConversationPage {
        conversations,
        next_cursor,
    }))
}

#[derive(Serialize)]
struct ConversationDetail {
    #[serde(flatten)]
    conversation: Conversation,
    customer: Customer,
    messages: Vec<Message>,
    handoff: Option<Handoff>,
}

async fn get_conversation(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&path)?;
    let conversation = services.store.conversation(id).await?;
    if !sees_conversation(&caller, &services, &conversation).await? {
        return Err(ApiError::Forbidden(
            "this conversation is not in your teams".into(),
        ));
    }
    let customer = services.store.customer(conversation.customer_id).await?;
    let messages = services.store.messages(id, None, 1000).await?;
    let handoff = services.store.latest_handoff(id).await?;
    Ok(HttpResponse::Ok().json(ConversationDetail {
        conversation,
        customer,
        messages,
        handoff,
    }))
}

/// Whether the caller may see a conversation: an admin always; otherwise when it is assigned
/// to them, or its latest ticket is in their scope (their teams, the general queue, their own).
async fn sees_conversation(
    caller: &Caller,
    services: &Services,
    conversation: &Conversation,
) -> Result<bool, ApiError> {
    if caller.role == Role::Admin {
        return Ok(true);
    }
    if let Role::Agent(me) = caller.role
        && conversation.assigned_agent_id == Some(me)
    {
        return Ok(true);
    }
    let scope = caller.scope(services).await?;
    Ok(
        match services.store.latest_handoff(conversation.id).await? {
            Some(handoff) => scope.sees(&handoff),
            // Never handed off: the bot's business, not staff's (admins aside).
            None => false,
        },
    )
}

/// A stored attachment's bytes, for whoever may see its conversation. Always served as a
/// download (`Content-Disposition: attachment`), so a hostile HTML or SVG file never renders
/// in Baton's origin.
async fn get_attachment(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::NotFound("attachment"));
    }
    let stored = services.store.file(&id).await?;
    let conversation = services.store.conversation(stored.conversation_id).await?;
    if !sees_conversation(&caller, &services, &conversation).await? {
        // The same answer as for an unknown id: no probing for what exists.
        return Err(ApiError::NotFound("attachment"));
    }
    let name: String = stored
        .file
        .name
        .as_deref()
        .unwrap_or("attachment")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' '))
        .take(100)
        .collect();
    let content_type = stored
        .file
        .content_type
        .parse::<mime::Mime>()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"{}\"",
                if name.trim().is_empty() {
                    "attachment"
                } else {
                    name.trim()
                }
            ),
        ))
        .body(stored.file.data))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HandoffIn {
    reason: Option<String>,
    summary: Option<String>,
    priority: Option<String>,
    skills: Option<Vec<String>>,
}

async fn request_handoff(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id: ConversationId = parse_id(&path)?;
    let body: HandoffIn = super::optional_json(&body)?;
    let mut e = Escalation::because(HandoffReason::Manual);
    e.reason_detail = optional_text("reason", body.reason, 500)?;
    e.summary = optional_text("summary", body.summary, 4000)?;
    e.priority = body
        .priority
        .as_deref()
        .map(str::parse::<Priority>)
        .transpose()?
        .unwrap_or_default();
    e.required_skills = body
        .skills
        .unwrap_or_default()
        .iter()
        .map(|s| Skill::parse(s))
        .collect::<Result<_, _>>()?;
    let handoff = services.handoffs.escalate(id, e).await?;
    audit(
        &services,
        &caller,
        "handoff.request",
        "handoff",
        &handoff.id.to_string(),
        serde_json::json!({"conversation_id": id}),
    )
    .await;
    Ok(HttpResponse::Created().json(handoff))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyIn {
    /// The text, or the caption of the file; optional with a template.
    text: Option<String>,
    /// Another channel of the customer's to answer by (`email`); absent: the conversation's.
    channel: Option<String>,
    agent_id: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentIn>,
    template: Option<TemplateIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentIn {
    url: String,
    content_type: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateIn {
    name: String,
    language: String,
    #[serde(default)]
    parameters: Vec<String>,
}

impl ReplyIn {
    /// Checks the reply against what the conversation's channel can carry.
    fn parse(self, channel: ChannelKind) -> Result<AgentReply, ApiError> {
        let template = self
            .template
            .map(|t| MessageTemplate::parse(&t.name, &t.language, t.parameters))
            .transpose()?;
        if template.is_some() && channel != ChannelKind::WhatsApp {
            return Err(ApiError::BadRequest(
                "templates are a WhatsApp feature; this conversation is on another channel".into(),
            ));
        }
        // Messaging apps carry one file per message; sending several as one reply would make a
        // partly failed send impossible to retry without repeating what already arrived.
        if self.attachments.len() > 1 {
            return Err(ApiError::BadRequest(
                "attachments: send one file per reply".into(),
            ));
        }
        if template.is_some() && !self.attachments.is_empty() {
            return Err(ApiError::BadRequest(
                "a template reply cannot carry a file".into(),
            ));
        }
        let attachments = self
            .attachments
            .into_iter()
            .map(AttachmentIn::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let text = match (self.text, &template) {
            (Some(text), _) => MessageText::parse(text.as_str())?,
            (None, Some(t)) => MessageText::parse(&t.describe())?,
            (None, None) => MessageText::parse("")?,
        };
        Ok(AgentReply {
            channel: self
                .channel
                .as_deref()
                .map(str::parse::<ChannelKind>)
                .transpose()?,
            text,
            attachments,
            template,
        })
    }
}

impl AttachmentIn {
    /// A file the platforms fetch by URL: it must be a public http(s) URL with a real
    /// content type, since that decides how each platform shows it.
    fn parse(self) -> Result<Attachment, ApiError> {
        let url = reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .filter(|_| self.url.len() <= 2048)
            .ok_or_else(|| {
                ApiError::BadRequest("attachments[].url must be an http(s) URL".into())
            })?;
        let content_type: mime::Mime = self.content_type.parse().map_err(|_| {
            ApiError::BadRequest("attachments[].content_type must be a MIME type".into())
        })?;
        let name = self
            .name
            .map(|n| n.trim().chars().take(255).collect::<String>())
            .filter(|n| !n.is_empty() && !n.chars().any(char::is_control));
        Ok(Attachment {
            content_type: content_type.essence_str().to_owned(),
            url: Some(url.to_string()),
            name,
            size: None,
            content_id: None,
            inline: false,
        })
    }
}

async fn agent_reply(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_id(&path)?;
    let body: ReplyIn = super::json_body(&body)?;
    let named = body
        .agent_id
        .as_deref()
        .map(parse_id::<AgentId>)
        .transpose()?;
    let agent = caller.acting_agent(named)?;
    let conversation = services.store.conversation(id).await?;
    let reply = body.parse(conversation.channel)?;
    let message = send_reply(&services, &conversation, agent, reply).await?;
    Ok(HttpResponse::Created().json(message))
}

/// Stores an agent's reply for delivery through the conversation's channel, after the checks
/// the platform would make: a text within the channel's length, and its reply window open (a
/// refusal named now, to the agent, beats a reply that fails in the background). A template is
/// what WhatsApp takes outside its window.
pub(super) async fn send_reply(
    services: &Services,
    conversation: &Conversation,
    agent: Option<AgentId>,
    reply: AgentReply,
) -> Result<Message, ApiError> {
    let channel = match reply.channel {
        Some(other) if other != conversation.channel => {
            if !other_channels(services, conversation)
                .await?
                .contains(&other)
            {
                return Err(ApiError::Conflict(format!(
                    "this customer cannot be reached by {} from here",
                    other.label()
                )));
            }
            if reply.template.is_some() || !reply.attachments.is_empty() {
                return Err(ApiError::BadRequest(
                    "a reply by another channel carries text only".into(),
                ));
            }
            other
        }
        _ => conversation.channel,
    };
    let max = channel.max_text_chars();
    if reply.text.as_str().chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "{} messages carry at most {max} characters",
            channel.label()
        )));
    }
    // Another channel has no reply window of the conversation's (email has none at all).
    if channel == conversation.channel
        && reply.template.is_none()
        && let Some(why) = reply_window_refusal(services, conversation).await?
    {
        return Err(ApiError::Conflict(why));
    }
    let message = services
        .store
        .append_agent_reply(conversation.id, agent, reply)
        .await?;
    services.dispatcher.kick();
    Ok(message)
}

/// The customer's other channels an agent may answer by from this conversation: email, when
/// the customer gave an address and Baton sends mail (the reply threads back here by its
/// reply address). Platform channels need the customer to have written there first.
pub(super) async fn other_channels(
    services: &Services,
    conversation: &Conversation,
) -> Result<Vec<ChannelKind>, ApiError> {
    if conversation.channel == ChannelKind::Email
        || services.settings.support_address.is_none()
        || services.settings.smtp_url.is_none()
    {
        return Ok(Vec::new());
    }
    let customer = services.store.customer(conversation.customer_id).await?;
    let has_email = customer
        .identities
        .iter()
        .any(|i| i.kind == crate::model::IdentityKind::Email);
    Ok(if has_email {
        vec![ChannelKind::Email]
    } else {
        Vec::new()
    })
}

/// Why the conversation's platform would refuse an agent's reply now (WhatsApp's 24-hour
/// window, Messenger's and Instagram's human-agent window), if it would: the same rule its
/// connector applies when sending.
pub(super) async fn reply_window_refusal(
    services: &Services,
    conversation: &Conversation,
) -> Result<Option<String>, ApiError> {
    use crate::channels::platform::{has_reply_window, reply_window};
    if !has_reply_window(conversation.channel) {
        return Ok(None);
    }
    let now = Timestamp::now();
    let recipient = services.store.channel_recipient(conversation.id).await?;
    Ok(reply_window(
        conversation.channel,
        recipient.last_inbound_at,
        now,
        crate::model::AuthorKind::Agent,
    )
    .err())
}

// --- handoffs --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct HandoffQuery {
    status: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct HandoffList {
    handoffs: Vec<Handoff>,
}

async fn list_handoffs(
    caller: Caller,
    services: web::Data<Services>,
    query: web::Query<HandoffQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<HandoffStatus>)
        .transpose()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let mut handoffs = services.store.list_handoffs(status, limit).await?;
    let scope = caller.scope(&services).await?;
    handoffs.retain(|h| scope.sees(h));
    Ok(HttpResponse::Ok().json(HandoffList { handoffs }))
}

async fn get_handoff(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let context = services.store.handoff_context(parse_id(&path)?).await?;
    let handoff = &context.handoff;
    if !caller.scope(&services).await?.sees(handoff) {
        return Err(ApiError::Forbidden(
            "this ticket is not in your teams".into(),
        ));
    }
    let waited_ms = match (handoff.status.is_open(), handoff.accepted_at) {
        (true, None) => Timestamp::now().millis_since(handoff.requested_at),
        (_, Some(at)) => at.millis_since(handoff.requested_at),
        (false, None) => handoff
            .closed_at
            .unwrap_or(handoff.requested_at)
            .millis_since(handoff.requested_at),
    };
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        handoff: &'a Handoff,
        /// How long the customer waited for a person (so far, while waiting).
        waited_ms: i64,
        context: &'a crate::store::HandoffContext,
    }
    Ok(HttpResponse::Ok().json(Out {
        handoff,
        waited_ms,
        context: &context,
    }))
}

// --- customers and rules ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsIn {
    tags: Vec<String>,
}

async fn set_customer_tags(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&path)?;
    let body: TagsIn = super::json_body(&body)?;
    if body.tags.len() > 50 {
        return Err(ApiError::BadRequest("at most 50 tags".into()));
    }
    let mut tags = body
        .tags
        .iter()
        .map(|t| Team::parse(t).map(|t| t.as_str().to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::BadRequest("tags are 1 to 64 of a-z, 0-9 and - _ : .".into()))?;
    tags.sort();
    tags.dedup();
    let customer = services.store.set_customer_tags(id, tags.clone()).await?;
    audit(
        &services,
        &caller,
        "customer.tags",
        "customer",
        &customer.id.to_string(),
        serde_json::json!({ "tags": tags }),
    )
    .await;
    Ok(HttpResponse::Ok().json(customer))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesIo {
    rules: Vec<crate::handoff::rules::RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLettersQuery {
    limit: Option<u32>,
}

/// The events the shipper set aside, with why (admin): what a replay would send again.
async fn list_dead_letters(
    caller: Caller,
    services: web::Data<Services>,
    query: web::Query<DeadLettersQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let total = services.store.dead_letter_count().await?;
    let letters = services.store.dead_letters(limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "total": total, "dead_letters": letters })))
}

/// Sends every dead letter again (admin), once what made ClickHouse refuse them is put right:
/// they go back into the outbox, behind the events waiting, and the shipper is woken.
async fn replay_dead_letters(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let requeued = services.store.dead_letters_requeue().await?;
    services.shipper.kick();
    audit(
        &services,
        &caller,
        "events.replay",
        "event_dead_letters",
        "all",
        serde_json::json!({ "requeued": requeued }),
    )
    .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "requeued": requeued })))
}

async fn get_rules(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    Ok(HttpResponse::Ok().json(RulesIo {
        rules: services.handoffs.rules().specs(),
    }))
}

async fn put_rules(
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let body: RulesIo = super::json_body(&body)?;
    if body.rules.len() > 500 {
        return Err(ApiError::BadRequest("at most 500 rules".into()));
    }
    let set = crate::handoff::rules::RuleSet::parse(body.rules)?;
    services.handoffs.set_rules(set).await?;
    let rules = services.handoffs.rules().specs();
    audit(
        &services,
        &caller,
        "rules.update",
        "escalation_rules",
        "all",
        serde_json::json!({ "rules": rules.len() }),
    )
    .await;
    Ok(HttpResponse::Ok().json(RulesIo { rules }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionIn {
    /// The agent acting (an admin acting for one).
    pub(super) agent_id: Option<String>,
    /// A transfer's or hand-back's note; a resolution's disposition note.
    pub(super) note: Option<String>,
    /// A transfer's target team.
    pub(super) team: Option<String>,
    /// A transfer's target agent.
    pub(super) to_agent_id: Option<String>,
    /// How a resolved ticket ended (`solved`, `no_response`, ...), kept in the audit log.
    pub(super) disposition: Option<String>,
}

async fn ticket_action(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let id: HandoffId = parse_id(&id)?;
    let body: ActionIn = super::optional_json(&body)?;
    let handoff = act(&services, &caller, id, &action, body).await?;
    Ok(HttpResponse::Ok().json(handoff))
}

/// Accepts, declines, resolves, releases or transfers a ticket as the caller, and writes the
/// audit log.
pub(super) async fn act(
    services: &Services,
    caller: &Caller,
    id: HandoffId,
    action: &str,
    body: ActionIn,
) -> Result<Handoff, ApiError> {
    let named = body
        .agent_id
        .as_deref()
        .map(parse_id::<AgentId>)
        .transpose()?;
    let agent = caller.acting_agent(named)?;
    let note = optional_text("note", body.note.clone(), 4000)?;
    let note_for_audit = note.clone();
    let disposition = optional_text("disposition", body.disposition.clone(), 64)?;
    let needs_agent = |what: &str| {
        agent.ok_or_else(|| {
            ApiError::BadRequest(format!("an admin must name the {what} agent as agent_id"))
        })
    };
    let handoff = match action {
        "accept" => {
            let agent = needs_agent("accepting")?;
            services
                .handoffs
                .step(id, TicketStep::Accept, Some(agent))
                .await?
        }
        "decline" => {
            let agent = needs_agent("declining")?;
            services.handoffs.decline(id, agent).await?
        }
        "resolve" => {
            services
                .handoffs
                .step(id, TicketStep::Resolve, agent)
                .await?
        }
        "release" => {
            services
                .handoffs
                .step_with_note(id, TicketStep::Release, agent, note)
                .await?
        }
        "transfer" => {
            let to = match (body.team.as_deref(), body.to_agent_id.as_deref()) {
                (Some(team), None) => TransferTarget::Team(Team::parse(team)?),
                (None, Some(a)) => TransferTarget::Agent(parse_id(a)?),
                _ => {
                    return Err(ApiError::BadRequest(
                        "a transfer names either team or to_agent_id".into(),
                    ));
                }
            };
            let note = note.ok_or_else(|| {
                ApiError::BadRequest("a transfer needs a note for whoever takes over".into())
            })?;
            services.handoffs.transfer(id, agent, to, note).await?
        }
        _ => return Err(ApiError::NotFound("route")),
    };
    audit(
        services,
        caller,
        &format!("handoff.{action}"),
        "handoff",
        &id.to_string(),
        serde_json::json!({
            "agent_id": agent,
            "note": note_for_audit,
            "to_team": body.team,
            "to_agent_id": body.to_agent_id,
            "disposition": disposition,
        }),
    )
    .await;
    Ok(handoff)
}

// --- queues ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct QueueList {
    queues: Vec<QueueConfig>,
}

async fn list_queues(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    Ok(HttpResponse::Ok().json(QueueList {
        queues: services.router.queue_configs().await?,
    }))
}

async fn put_queue(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let team = Team::parse(&path)?;
    // The team comes from the path; the body is the rest of the queue's settings.
    let mut json: serde_json::Value = super::json_body(&body)?;
    let Some(map) = json.as_object_mut() else {
        return Err(ApiError::BadRequest("a queue is a JSON object".into()));
    };
    map.insert("team".into(), team.as_str().into());
    let queue: QueueConfig =
        serde_json::from_value(json).map_err(|e| ApiError::BadRequest(format!("queue: {e}")))?;
    services.router.set_queue(queue.clone()).await?;
    audit(
        &services,
        &caller,
        "queue.update",
        "queue",
        team.as_str(),
        serde_json::to_value(&queue).unwrap_or_default(),
    )
    .await;
    Ok(HttpResponse::Ok().json(queue))
}

// --- agents ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentIn {
    name: String,
    email: String,
    skills: Option<Vec<String>>,
    teams: Option<Vec<String>>,
    max_concurrent: Option<u32>,
    capacity: Option<crate::model::WorkCapacity>,
    hours: Option<crate::model::BusinessHours>,
}

#[derive(Serialize)]
struct CreatedAgent {
    #[serde(flatten)]
    agent: Agent,
    /// The agent's API token, shown once.
    token: String,
}

async fn create_agent(
    caller: Caller,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let body: AgentIn = super::json_body(&body)?;
    let name = optional_text("name", Some(body.name), 200)?
        .ok_or_else(|| ApiError::BadRequest("name must not be empty".into()))?;
    let max_concurrent = checked_max(body.max_concurrent.unwrap_or(3))?;
    let agent = services
        .store
        .create_agent(NewAgent {
            name,
            email: EmailAddress::parse(&body.email)?,
            skills: body
                .skills
                .unwrap_or_default()
                .iter()
                .map(|s| Skill::parse(s))
                .collect::<Result<_, _>>()?,
            teams: body
                .teams
                .unwrap_or_default()
                .iter()
                .map(|t| Team::parse(t))
                .collect::<Result<_, _>>()?,
            max_concurrent,
            capacity: checked_capacity(body.capacity.unwrap_or_default())?,
            hours: body.hours,
        })
        .await?;
    services.router.agent_changed(agent.id).await?;
    audit(
        &services,
        &caller,
        "agent.create",
        "agent",
        &agent.id.to_string(),
        serde_json::json!({"email": agent.email, "teams": agent.teams}),
    )
    .await;
    let token = new_token("baton_agent");
    services
        .store
        .insert_token(&hash_token(&token), Role::Agent(agent.id), "agent token")
        .await?;
    Ok(HttpResponse::Created().json(CreatedAgent { agent, token }))
}

/// An overall capacity within what one person can hold.
fn checked_max(n: u32) -> Result<u32, ApiError> {
    if n > 1000 {
        return Err(ApiError::BadRequest(
            "max_concurrent must be at most 1000".into(),
        ));
    }
    Ok(n)
}

/// A capacity per kind of work within what one person can hold.
fn checked_capacity(c: crate::model::WorkCapacity) -> Result<crate::model::WorkCapacity, ApiError> {
    if [c.chat, c.messaging, c.email]
        .into_iter()
        .flatten()
        .any(|n| n > 1000)
    {
        return Err(ApiError::BadRequest(
            "capacity values must be at most 1000".into(),
        ));
    }
    Ok(c)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentPatch {
    skills: Option<Vec<String>>,
    teams: Option<Vec<String>>,
    max_concurrent: Option<u32>,
    capacity: Option<crate::model::WorkCapacity>,
    /// `null` clears the hours; absent keeps them.
    #[serde(default, deserialize_with = "present")]
    hours: Option<Option<crate::model::BusinessHours>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn update_agent(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id: AgentId = parse_id(&path)?;
    let body: AgentPatch = super::json_body(&body)?;
    let update = crate::store::AgentUpdate {
        skills: body
            .skills
            .map(|v| v.iter().map(|s| Skill::parse(s)).collect::<Result<_, _>>())
            .transpose()?,
        teams: body
            .teams
            .map(|v| v.iter().map(|t| Team::parse(t)).collect::<Result<_, _>>())
            .transpose()?,
        max_concurrent: body.max_concurrent.map(checked_max).transpose()?,
        capacity: body.capacity.map(checked_capacity).transpose()?,
        hours: body.hours,
    };
    let agent = services.store.update_agent(id, update).await?;
    services.router.agent_changed(id).await?;
    audit(
        &services,
        &caller,
        "agent.update",
        "agent",
        &id.to_string(),
        serde_json::json!({
            "skills": agent.skills, "teams": agent.teams, "max_concurrent": agent.max_concurrent,
            "capacity": agent.capacity, "hours": agent.hours,
        }),
    )
    .await;
    Ok(HttpResponse::Ok().json(agent))
}

#[derive(Serialize)]
struct AgentList {
    agents: Vec<Agent>,
}

async fn list_agents(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    Ok(HttpResponse::Ok().json(AgentList {
        agents: services.store.list_agents().await?,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceIn {
    status: String,
}

async fn set_presence(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id: AgentId = parse_id(&path)?;
    caller.acting_agent(Some(id))?;
    let body: PresenceIn = super::json_body(&body)?;
    let presence: Presence = body.status.parse()?;
    let agent = services.store.set_presence(id, presence).await?;
    services.router.agent_changed(id).await?;
    Ok(HttpResponse::Ok().json(agent))
}

#[cfg(test)]
mod reply_tests {
    use super::*;

    fn reply(json: serde_json::Value) -> ReplyIn {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_template_is_refused_on_any_channel_but_whatsapp() {
        let t = serde_json::json!({"template": {"name": "hello", "language": "en"}});
        assert!(reply(t.clone()).parse(ChannelKind::WhatsApp).is_ok());
        for channel in [
            ChannelKind::Telegram,
            ChannelKind::Messenger,
            ChannelKind::Email,
        ] {
            assert!(matches!(
                reply(t.clone()).parse(channel),
                Err(ApiError::BadRequest(m)) if m.contains("WhatsApp")
            ));
        }
    }

    #[test]
    fn a_file_keeps_its_url_type_and_a_clean_name() {
        let r = reply(serde_json::json!({"text": "Invoice", "attachments": [{
            "url": "https://files.example.com/i.pdf", "content_type": "Application/PDF; q=1",
            "name": "  invoice.pdf  "}]}))
        .parse(ChannelKind::Telegram)
        .unwrap();
        let file = &r.attachments[0];
        assert_eq!(file.url.as_deref(), Some("https://files.example.com/i.pdf"));
        assert_eq!(file.content_type, "application/pdf");
        assert_eq!(file.name.as_deref(), Some("invoice.pdf"));
    }
}
