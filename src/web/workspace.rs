//! The agent workspace: one inbox of tickets from every channel, live over SSE; the offer
//! pop-up with its countdown; the ticket view (context package first, then the transcript,
//! inbound email HTML sanitized); replying through the conversation's channel with canned
//! responses; private notes; transfer, release and resolve; the presence switch.
//!
//! Plain forms that post and redirect (they work without JavaScript); htmx adds the live inbox,
//! the transcript refresh and canned responses; `static/workspace.js` adds the countdowns and
//! keyboard shortcuts. Every form carries the session's CSRF token.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::api::{ActionIn, act, reply_window_refusal, send_reply};
use super::auth::{Caller, Scope};
use super::error::ApiError;
use crate::handoff::canned::{CannedResponse, Variables};
use crate::model::{
    AgentId, AuthorKind, Direction, Handoff, HandoffId, HandoffStatus, Message, MessageText,
    Presence, Timestamp,
};
use crate::services::Services;
use crate::store::{AgentReply, HandoffNote, Role};

/// Registers the workspace pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/workspace", web::get().to(inbox_page))
        .route("/workspace/inbox", web::get().to(inbox_fragment))
        .route("/workspace/events", web::get().to(inbox_stream))
        .route("/workspace/presence", web::post().to(set_presence))
        .route("/workspace/tickets/{id}", web::get().to(ticket_page))
        .route(
            "/workspace/tickets/{id}/transcript",
            web::get().to(transcript_fragment),
        )
        .route("/workspace/tickets/{id}/canned", web::get().to(canned))
        .service(
            // A reply may be as long as the channel takes (email: 64 KiB), more than the 16 KiB
            // other forms get.
            web::resource("/workspace/tickets/{id}/reply")
                .app_data(web::FormConfig::default().limit(256 * 1024))
                .route(web::post().to(reply)),
        )
        .route("/workspace/tickets/{id}/note", web::post().to(note))
        .route("/workspace/tickets/{id}/{action}", web::post().to(action));
}

/// The most tickets each inbox list shows.
const LIST_LIMIT: u32 = 200;

/// Sends a browser without a session to the login page, back here afterwards.
fn to_login(req: &HttpRequest) -> HttpResponse {
    let next = form_urlencoded::byte_serialize(req.path().as_bytes()).collect::<String>();
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/login?next={next}")))
        .finish()
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

/// "3 min", "2 h 05 min": how long something has waited.
fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The SLA clock of an open ticket: time left against the target that applies now (an agent
/// owning it, then the first reply), or how far over it is.
struct SlaClock {
    text: String,
    breached: bool,
}

fn sla_clock(h: &Handoff, now: Timestamp, services: &Services) -> Option<SlaClock> {
    let target_secs = match h.status {
        HandoffStatus::Queued | HandoffStatus::Assigned => services.settings.sla_assignment_secs,
        HandoffStatus::Accepted if h.first_reply_at.is_none() => {
            services.settings.sla_first_reply_secs
        }
        _ => return None,
    };
    let left = target_secs as i64 * 1000 - now.millis_since(h.requested_at);
    Some(if left >= 0 {
        SlaClock {
            text: format!("{} left", duration_text(left)),
            breached: false,
        }
    } else {
        SlaClock {
            text: format!("over by {}", duration_text(-left)),
            breached: true,
        }
    })
}

/// How staff see a customer: their name, else an address or number they gave, else the
/// channel ("Web chat visitor"), never an opaque platform id.
fn customer_name(customer: &crate::model::Customer, channel: crate::model::ChannelKind) -> String {
    use crate::model::IdentityKind;
    customer
        .display_name
        .clone()
        .or_else(|| {
            customer
                .identities
                .iter()
                .find(|i| matches!(i.kind, IdentityKind::Email | IdentityKind::Phone))
                .map(|i| i.value.clone())
        })
        .unwrap_or_else(|| format!("{} visitor", channel.label()))
}

/// One ticket in an inbox list.
struct Row {
    id: String,
    channel: &'static str,
    channel_label: &'static str,
    customer: String,
    reason: String,
    priority: &'static str,
    status: &'static str,
    team: String,
    waiting: String,
    sla: Option<SlaClock>,
    /// While offered: when the offer lapses (epoch ms) and the seconds left now.
    deadline_ms: Option<i64>,
    deadline_left: String,
}

async fn row(services: &Services, h: &Handoff, now: Timestamp) -> Result<Row, ApiError> {
    let conversation = services.store.conversation(h.conversation_id).await?;
    let customer = services.store.customer(conversation.customer_id).await?;
    let name = customer_name(&customer, conversation.channel);
    Ok(Row {
        id: h.id.to_string(),
        channel: conversation.channel.as_str(),
        channel_label: conversation.channel.label(),
        customer: name,
        reason: h.reason.to_string().replace('_', " "),
        priority: h.priority.as_str(),
        status: match h.status {
            HandoffStatus::Queued => "waiting",
            HandoffStatus::Assigned => "offered",
            HandoffStatus::Accepted => "in progress",
            _ => "closed",
        },
        team: h.team.clone().unwrap_or_else(|| "general".into()),
        waiting: duration_text(now.millis_since(h.requested_at)),
        sla: sla_clock(h, now, services),
        deadline_ms: h.offer_deadline.map(|d| d.as_millis()),
        deadline_left: h
            .offer_deadline
            .map(|d| format!("{} s", (d.millis_since(now) / 1000).max(0)))
            .unwrap_or_default(),
    })
}

/// What the inbox shows one person.
#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
struct Inbox {
    csrf: String,
    /// Rendered for the live stream (tests and people can tell it is live).
    streamed: bool,
    can_act: bool,
    /// Offered to me, waiting for accept or decline.
    offered: Vec<Row>,
    /// Mine, accepted.
    mine: Vec<Row>,
    /// Waiting in the queues I serve.
    queue: Vec<Row>,
    /// Everything else open that I may see (managers and admins).
    others: Vec<Row>,
}

async fn load_inbox(
    services: &Services,
    caller: &Caller,
    scope: &Scope,
) -> Result<Inbox, ApiError> {
    let me = match caller.role {
        Role::Agent(me) => Some(me),
        _ => None,
    };
    let now = Timestamp::now();
    let mut inbox = Inbox {
        csrf: caller.csrf.clone().unwrap_or_default(),
        streamed: false,
        can_act: matches!(caller.role, Role::Agent(_)),
        offered: Vec::new(),
        mine: Vec::new(),
        queue: Vec::new(),
        others: Vec::new(),
    };
    for status in [
        HandoffStatus::Assigned,
        HandoffStatus::Accepted,
        HandoffStatus::Queued,
    ] {
        for h in services
            .store
            .list_handoffs(Some(status), LIST_LIMIT)
            .await?
        {
            if !scope.sees(&h) {
                continue;
            }
            let mine = me.is_some() && h.assigned_agent_id == me;
            let list = match (status, mine) {
                (HandoffStatus::Assigned, true) => &mut inbox.offered,
                (HandoffStatus::Accepted, true) => &mut inbox.mine,
                (HandoffStatus::Queued, _) => &mut inbox.queue,
                _ => &mut inbox.others,
            };
            list.push(row(services, &h, now).await?);
        }
    }
    Ok(inbox)
}

#[derive(Template, WebTemplate)]
#[template(path = "workspace.html")]
struct WorkspacePage {
    csrf: String,
    nav: Nav,
    inbox: Inbox,
}

/// The header's links, the presence switch and the agent's load.
pub(super) struct Nav {
    pub(super) name: String,
    pub(super) role: &'static str,
    pub(super) presence: Option<&'static str>,
    /// "1/3": tickets owned now out of the agent's capacity.
    pub(super) load: Option<String>,
    pub(super) dashboard: bool,
    pub(super) admin: bool,
}

pub(super) async fn nav(services: &Services, caller: &Caller) -> Result<Nav, ApiError> {
    let name = match caller.user {
        Some(u) => services.store.user(u).await?.name,
        None => "Admin".into(),
    };
    let (presence, load) = match caller.role {
        Role::Agent(me) => {
            let agent = services.store.agent(me).await?;
            let owned = services
                .store
                .list_handoffs(Some(HandoffStatus::Accepted), 1000)
                .await?
                .iter()
                .filter(|h| h.assigned_agent_id == Some(me))
                .count();
            (
                Some(agent.presence.as_str()),
                Some(format!("{owned}/{}", agent.max_concurrent)),
            )
        }
        _ => (None, None),
    };
    Ok(Nav {
        name,
        role: caller.role_name(),
        presence,
        load,
        dashboard: matches!(caller.role, Role::Admin | Role::Manager(_)),
        admin: caller.role == Role::Admin,
    })
}

async fn inbox_page(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let Ok(caller) = caller else {
        return Ok(to_login(&req));
    };
    let scope = caller.scope(&services).await?;
    let page = WorkspacePage {
        csrf: caller.csrf.clone().unwrap_or_default(),
        nav: nav(&services, &caller).await?,
        inbox: load_inbox(&services, &caller, &scope).await?,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

async fn inbox_fragment(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope(&services).await?;
    let inbox = load_inbox(&services, &caller, &scope).await?;
    Ok(inbox.respond_to(&req).map_into_boxed_body())
}

/// The inbox as a server-sent event stream: rendered on connect, again after every routing
/// change (a ticket queued, offered, accepted, moved or closed), coalesced to one render per
/// 250 ms, and every 15 s so waiting times and SLA clocks move.
async fn inbox_stream(
    caller: Caller,
    services: web::Data<Services>,
) -> Result<impl Responder, ApiError> {
    let scope = caller.scope(&services).await?;
    let for_render = services.clone();
    // Waiting times and SLA clocks move with time: at least every 15 s.
    Ok(super::live_html(
        services,
        "inbox",
        Duration::from_secs(15),
        move || {
            let (services, caller, scope) = (for_render.clone(), caller.clone(), scope.clone());
            async move {
                match load_inbox(&services, &caller, &scope).await {
                    Ok(mut inbox) => {
                        inbox.streamed = true;
                        inbox.render().ok()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "workspace: inbox failed");
                        None
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct PresenceForm {
    status: String,
}

async fn set_presence(
    caller: Caller,
    services: web::Data<Services>,
    form: web::Form<PresenceForm>,
) -> Result<HttpResponse, ApiError> {
    let Role::Agent(me) = caller.role else {
        return Err(ApiError::Forbidden("only agents have a presence".into()));
    };
    let presence: Presence = form.status.parse()?;
    services.store.set_presence(me, presence).await?;
    // Going away or offline withdraws the offers not yet accepted; they go to others.
    services.router.agent_changed(me).await?;
    Ok(see_other("/workspace".into()))
}

// --- the ticket ------------------------------------------------------------------------------

/// One message of the transcript.
struct Line {
    who: String,
    class: &'static str,
    at: String,
    text: String,
    /// Sanitized again at render (defense in depth: stored HTML was sanitized at ingest).
    html: Option<String>,
    attachments: Vec<FileLink>,
    delivery: Option<String>,
}

struct FileLink {
    name: String,
    href: Option<String>,
}

fn line(m: &Message, agent_names: &[(AgentId, String)]) -> Line {
    let who = match (m.direction, m.author_kind) {
        (Direction::In, _) => "Customer".to_owned(),
        (_, AuthorKind::Bot) => "Bot".into(),
        (_, AuthorKind::System) => "Notice".into(),
        (_, AuthorKind::Agent) => m
            .agent_id
            .and_then(|a| agent_names.iter().find(|(id, _)| *id == a))
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| "Agent".into()),
        (_, AuthorKind::Customer) => "Customer".into(),
    };
    let class = match (m.direction, m.author_kind) {
        (Direction::In, _) => "in",
        (_, AuthorKind::System) => "system",
        (_, AuthorKind::Bot) => "bot",
        _ => "out",
    };
    let attachments = m
        .attachments
        .iter()
        .map(|a| FileLink {
            name: a.name.clone().unwrap_or_else(|| a.content_type.clone()),
            // Only our own download route or a web URL; never javascript: or data:.
            href: a.url.clone().filter(|u| {
                u.starts_with("/api/v1/attachments/")
                    || u.starts_with("https://")
                    || u.starts_with("http://")
            }),
        })
        .collect();
    Line {
        who,
        class,
        at: {
            // "2026-11-24 06:42 UTC": minutes are what people read; the title has the rest.
            let full = m.created_at.to_rfc3339();
            format!("{} UTC", full.get(..16).unwrap_or(&full).replace('T', " "))
        },
        text: m.text.clone(),
        html: m
            .html
            .as_deref()
            .map(crate::channels::email::parse::sanitize_html),
        attachments,
        delivery: (m.direction == Direction::Out && m.author_kind == AuthorKind::Agent)
            .then(|| m.delivery_status.as_str().to_owned()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "transcript.html")]
struct Transcript {
    lines: Vec<Line>,
}

#[derive(Template, WebTemplate)]
#[template(path = "ticket.html")]
struct TicketPage {
    csrf: String,
    nav: Nav,
    id: String,
    notice: Option<String>,
    customer: String,
    identities: Vec<(String, String)>,
    tags: String,
    channel: &'static str,
    channel_label: &'static str,
    status: &'static str,
    priority: &'static str,
    team: String,
    reason: String,
    reason_detail: Option<String>,
    rule: Option<String>,
    summary: Option<String>,
    intent: Option<String>,
    language: Option<String>,
    fields: Vec<(String, String)>,
    earlier: Vec<(String, String, String)>,
    notes: Vec<(String, String, String)>,
    transcript: Transcript,
    sla: Option<SlaClock>,
    /// Offered to me: accept or decline.
    offered_to_me: bool,
    /// Mine (or an admin's to act on): reply, note, transfer, release, resolve.
    can_work: bool,
    /// Why the platform would refuse a reply now, if it would.
    window_closed: Option<String>,
    max_chars: usize,
    /// Other channels of the customer's the reply may go by: (value, label).
    reply_by: Vec<(&'static str, &'static str)>,
    canned: Vec<String>,
    teams: Vec<String>,
}

async fn load_ticket(
    services: &Services,
    caller: &Caller,
    id: HandoffId,
) -> Result<crate::store::HandoffContext, ApiError> {
    let context = services.store.handoff_context(id).await?;
    if !caller.scope(services).await?.sees(&context.handoff) {
        return Err(ApiError::Forbidden(
            "this ticket is not in your teams".into(),
        ));
    }
    Ok(context)
}

async fn agent_names(services: &Services) -> Vec<(AgentId, String)> {
    services
        .store
        .list_agents()
        .await
        .map(|agents| agents.into_iter().map(|a| (a.id, a.name)).collect())
        .unwrap_or_default()
}

fn canned_responses(services: &Services) -> Vec<CannedResponse> {
    if services.settings.canned_responses.is_empty() {
        CannedResponse::defaults()
    } else {
        services.settings.canned_responses.clone()
    }
}

#[derive(Deserialize)]
struct TicketQuery {
    notice: Option<String>,
}

async fn ticket_page(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    services: web::Data<Services>,
    path: web::Path<String>,
    query: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    let Ok(caller) = caller else {
        return Ok(to_login(&req));
    };
    let id: HandoffId = path.parse()?;
    let c = load_ticket(&services, &caller, id).await?;
    let names = agent_names(&services).await;
    let h = &c.handoff;
    let me = match caller.role {
        Role::Agent(me) => Some(me),
        _ => None,
    };
    let owned = me.is_some() && h.assigned_agent_id == me;
    let can_work = h.status == HandoffStatus::Accepted && (owned || caller.role == Role::Admin);
    let window_closed = if can_work {
        reply_window_refusal(&services, &c.conversation).await?
    } else {
        None
    };
    let reply_by = if can_work {
        super::api::other_channels(&services, &c.conversation).await?
    } else {
        Vec::new()
    };
    let teams = services
        .router
        .queue_configs()
        .await?
        .into_iter()
        .map(|q| q.team.as_str().to_owned())
        .collect();
    let page = TicketPage {
        csrf: caller.csrf.clone().unwrap_or_default(),
        nav: nav(&services, &caller).await?,
        id: h.id.to_string(),
        notice: query.notice.clone().map(|n| n.chars().take(300).collect()),
        customer: customer_name(&c.customer, c.conversation.channel),
        identities: c
            .customer
            .identities
            .iter()
            .map(|i| (i.kind.as_str().to_owned(), i.value.clone()))
            .collect(),
        tags: c.customer.tags.join(", "),
        channel: c.conversation.channel.as_str(),
        channel_label: c.conversation.channel.label(),
        status: match h.status {
            HandoffStatus::Queued => "waiting",
            HandoffStatus::Assigned => "offered",
            HandoffStatus::Accepted => "in progress",
            HandoffStatus::Resolved => "resolved",
            HandoffStatus::Released => "released to the bot",
            _ => "closed",
        },
        priority: h.priority.as_str(),
        team: h.team.clone().unwrap_or_else(|| "general".into()),
        reason: h.reason.to_string().replace('_', " "),
        reason_detail: h.reason_detail.clone(),
        rule: h.rule.clone(),
        summary: h.summary.clone(),
        intent: h.intent.clone(),
        language: h.language.clone(),
        fields: h
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        earlier: c
            .earlier_conversations
            .iter()
            .map(|s| {
                (
                    s.conversation.channel.label().to_owned(),
                    format!("{} · {} messages", s.conversation.status, s.message_count),
                    s.last_message.clone().unwrap_or_default(),
                )
            })
            .collect(),
        notes: c
            .notes
            .iter()
            .map(|n: &HandoffNote| {
                let author = n
                    .author_agent_id
                    .and_then(|a| names.iter().find(|(id, _)| *id == a))
                    .map(|(_, name)| name.clone())
                    .unwrap_or_else(|| "staff".into());
                let to = n
                    .to_team
                    .as_deref()
                    .map(|t| format!(" → {t}"))
                    .unwrap_or_default();
                (format!("{}{to}", n.kind), author, n.text.clone())
            })
            .collect(),
        transcript: Transcript {
            lines: c.messages.iter().map(|m| line(m, &names)).collect(),
        },
        sla: sla_clock(h, Timestamp::now(), &services),
        offered_to_me: owned && h.status == HandoffStatus::Assigned,
        can_work,
        window_closed,
        max_chars: c.conversation.channel.max_text_chars(),
        reply_by: reply_by
            .into_iter()
            .map(|ch| (ch.as_str(), ch.label()))
            .collect(),
        canned: canned_responses(&services)
            .into_iter()
            .map(|r| r.name)
            .collect(),
        teams,
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

/// The transcript alone, for the ticket page's refresh.
async fn transcript_fragment(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: HandoffId = path.parse()?;
    let c = load_ticket(&services, &caller, id).await?;
    let names = agent_names(&services).await;
    let t = Transcript {
        lines: c.messages.iter().map(|m| line(m, &names)).collect(),
    };
    Ok(t.respond_to(&req).map_into_boxed_body())
}

#[derive(Template, WebTemplate)]
#[template(path = "reply_text.html")]
struct ReplyText {
    text: String,
    max_chars: usize,
}

#[derive(Deserialize)]
struct CannedQuery {
    canned: String,
}

/// The reply box filled with a canned response, its variables filled in for this ticket.
async fn canned(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    query: web::Query<CannedQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: HandoffId = path.parse()?;
    let c = load_ticket(&services, &caller, id).await?;
    let agent_name = match caller.user {
        Some(u) => services.store.user(u).await?.name,
        None => "Support".into(),
    };
    let short = c.handoff.id.to_string();
    let text = canned_responses(&services)
        .into_iter()
        .find(|r| r.name == query.canned)
        .map(|r| {
            r.expand(&Variables {
                customer_name: c.customer.display_name.as_deref(),
                agent_name: &agent_name,
                ticket: &short[short.len().saturating_sub(8)..],
            })
        })
        .unwrap_or_default();
    let fragment = ReplyText {
        text,
        max_chars: c.conversation.channel.max_text_chars(),
    };
    Ok(fragment.respond_to(&req).map_into_boxed_body())
}

/// Back to the ticket, with what happened (or what went wrong) in a banner.
fn back_to(id: HandoffId, notice: Option<String>) -> HttpResponse {
    let mut location = format!("/workspace/tickets/{id}");
    if let Some(n) = notice {
        location.push_str("?notice=");
        location.extend(form_urlencoded::byte_serialize(n.as_bytes()));
    }
    see_other(location)
}

/// Client errors go back to the page as a banner; the rest are answered as errors.
fn banner_or_error(id: HandoffId, e: ApiError) -> Result<HttpResponse, ApiError> {
    match e {
        ApiError::BadRequest(m) | ApiError::Conflict(m) | ApiError::Forbidden(m) => {
            Ok(back_to(id, Some(m)))
        }
        ApiError::NotFound(what) => Ok(back_to(id, Some(format!("{what} not found")))),
        other => Err(other),
    }
}

#[derive(Deserialize)]
struct ReplyForm {
    text: String,
    /// Another channel of the customer's (`email`); empty: the conversation's.
    channel: Option<String>,
}

async fn reply(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    form: web::Form<ReplyForm>,
) -> Result<HttpResponse, ApiError> {
    let id: HandoffId = path.parse()?;
    let c = load_ticket(&services, &caller, id).await?;
    let result = async {
        let agent = caller.acting_agent(None)?;
        let reply = AgentReply {
            channel: form
                .channel
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(str::parse)
                .transpose()?,
            text: MessageText::parse(&form.text)?,
            attachments: Vec::new(),
            template: None,
        };
        send_reply(&services, &c.conversation, agent, reply).await
    }
    .await;
    match result {
        Ok(_) => Ok(back_to(id, None)),
        Err(e) => banner_or_error(id, e),
    }
}

#[derive(Deserialize)]
struct NoteForm {
    text: String,
}

/// A private note: staff see it on the ticket, the customer never does.
async fn note(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<String>,
    form: web::Form<NoteForm>,
) -> Result<HttpResponse, ApiError> {
    let id: HandoffId = path.parse()?;
    load_ticket(&services, &caller, id).await?;
    if matches!(caller.role, Role::Manager(_)) {
        return Err(ApiError::Forbidden(
            "managers watch tickets; agents and admins write on them".into(),
        ));
    }
    let text = form.text.trim();
    if text.is_empty() || text.len() > 4000 {
        return Ok(back_to(id, Some("A note is 1 to 4000 characters.".into())));
    }
    let author = match caller.role {
        Role::Agent(me) => Some(me),
        _ => None,
    };
    services
        .store
        .add_handoff_note(
            id,
            HandoffNote {
                kind: "internal".into(),
                author_agent_id: author,
                to_team: None,
                to_agent_id: None,
                text: text.to_owned(),
                created_at: Timestamp::now(),
            },
        )
        .await?;
    super::accounts::audit(
        &services,
        &caller,
        "handoff.note",
        "handoff",
        &id.to_string(),
        serde_json::Value::Null,
    )
    .await;
    Ok(back_to(id, None))
}

#[derive(Deserialize)]
struct ActionForm {
    note: Option<String>,
    team: Option<String>,
    disposition: Option<String>,
}

async fn action(
    caller: Caller,
    services: web::Data<Services>,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let id: HandoffId = id.parse()?;
    if !matches!(
        action.as_str(),
        "accept" | "decline" | "resolve" | "release" | "transfer"
    ) {
        return Err(ApiError::NotFound("route"));
    }
    load_ticket(&services, &caller, id).await?;
    let form = form.into_inner();
    let body = ActionIn {
        note: form.note.filter(|n| !n.trim().is_empty()),
        team: form.team.filter(|t| !t.is_empty()),
        disposition: form.disposition.filter(|d| !d.is_empty()),
        ..Default::default()
    };
    match act(&services, &caller, id, &action, body).await {
        // Accepting opens the ticket; the others end my part in it.
        Ok(_) if action == "accept" => Ok(back_to(id, None)),
        Ok(_) => Ok(see_other("/workspace".into())),
        Err(e) => banner_or_error(id, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_times_read_in_the_largest_sensible_unit() {
        assert_eq!(duration_text(42_000), "42 s");
        assert_eq!(duration_text(185_000), "3 min");
        assert_eq!(duration_text(7_500_000), "2 h 05 min");
        assert_eq!(duration_text(-5), "0 s");
    }
}
