//! The durable store: customers, conversations, messages, handoffs, agents, tokens and the
//! event outbox.
//!
//! Everything above this module talks to the [`Store`] trait, never to SQL. The embedded
//! default is [`SqliteStore`] (one gateway instance); [`PgStore`] keeps the store in a
//! PostgreSQL database that several instances share ([`StoreLocation`] says which).
//!
//! Each method is one transaction: a state change and the handoff events it causes commit
//! together or not at all, so analytics can never disagree with the store.

mod postgres;
mod rows;
mod sqlite;

pub use postgres::{PgStore, is_postgres_url};
pub use rows::encode_outbox_payload;
pub use sqlite::SqliteStore;

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded SQLite file (one gateway instance).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, by URL (a secret: it may hold a password).
    Postgres(secrecy::SecretString),
}

/// Opens the store at `location`, applying migrations.
pub async fn open(location: &StoreLocation) -> Result<SharedStore, StoreError> {
    use secrecy::ExposeSecret;
    Ok(match location {
        StoreLocation::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path).await?),
        StoreLocation::Postgres(url) => {
            std::sync::Arc::new(PgStore::open(url.expose_secret()).await?)
        }
    })
}

/// Applies migrations at `location` and closes the store (`baton migrate`).
pub async fn migrate(location: &StoreLocation) -> Result<(), StoreError> {
    use secrecy::ExposeSecret;
    match location {
        StoreLocation::Sqlite(path) => SqliteStore::migrate(path).await,
        StoreLocation::Postgres(url) => PgStore::migrate(url.expose_secret()).await,
    }
}

use async_trait::async_trait;

use crate::model::{
    Agent, AgentId, Attachment, AuthorKind, Automated, ChannelKind, Conversation, ConversationId,
    ConversationStatus, Customer, DeliveryStatus, EmailAddress, Handoff, HandoffEvent, HandoffId,
    HandoffReason, HandoffStatus, Identity, IllegalTransition, Message, MessageId, MessageText,
    PhoneNumber, Presence, Priority, ReopenPolicy, Skill, Team, ThreadMatch, ThreadSignals,
    Timestamp, User, UserId, UserRole,
};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (e.g. a handoff that is already open).
    #[error("{0}")]
    Conflict(String),
    /// The lifecycle forbids the change.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// The acting agent is not the one the ticket belongs to.
    #[error("this ticket belongs to another agent")]
    NotYours,
    /// The database cannot take writes or reads right now (disk full, locked, gone).
    /// Callers answer 503 so that senders retry.
    #[error("store unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A stored value no longer parses: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else from the driver.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Another gateway instance changed routing (offered a ticket, an agent went offline)
    /// since the router last read it: the router reads again and decides again.
    #[error("routing changed on another gateway instance; try again")]
    StaleRouting,
    /// Migrations failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let unavailable = match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(pg) => postgres::unavailable(pg.code()),
                    None => sqlite::unavailable(db.code().as_deref()),
                };
                if unavailable {
                    StoreError::Unavailable(e)
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Who sent an inbound message, as the channel describes them.
#[derive(Debug, Clone)]
pub struct SenderProfile {
    /// The channel's handle for the sender: how they are recognized next time.
    pub identity: Identity,
    /// Their name, if the channel gives one.
    pub display_name: Option<String>,
    /// An email address they gave: links them to the same person on other channels.
    pub email: Option<EmailAddress>,
    /// A phone number they gave: links them to the same person on other channels.
    pub phone: Option<PhoneNumber>,
}

/// A customer message, normalized from any channel, ready to store.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The channel it came on.
    pub channel: ChannelKind,
    /// Who sent it.
    pub sender: SenderProfile,
    /// The conversation it belongs to when the channel already knows (web chat).
    pub conversation_id: Option<ConversationId>,
    /// The channel's id for the message; duplicates of it are ignored.
    pub external_id: Option<String>,
    /// The text.
    pub text: MessageText,
    /// An HTML body, if any.
    pub html: Option<String>,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// When the channel says it was sent; Baton orders by its own receive time.
    pub sent_at: Option<Timestamp>,
}

/// The result of storing an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IngestReceipt {
    /// The conversation it went into.
    pub conversation_id: ConversationId,
    /// The stored message (the earlier one, for a duplicate).
    pub message_id: MessageId,
    /// Whether this was a redelivery of a message already stored.
    pub duplicate: bool,
}

/// A message from support to the customer, before it is stored.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Bot, agent or system.
    pub author_kind: AuthorKind,
    /// The agent, for agent messages.
    pub agent_id: Option<AgentId>,
    /// The text.
    pub text: MessageText,
    /// An HTML alternative, if any.
    pub html: Option<String>,
    /// Files sent with it, by URL (the platforms fetch them).
    pub attachments: Vec<crate::model::Attachment>,
    /// A WhatsApp template sent instead of free text.
    pub template: Option<crate::model::MessageTemplate>,
    /// Another channel of the customer's to send it by (e.g. email after they left the chat);
    /// `None`: the conversation's.
    pub channel: Option<ChannelKind>,
}

impl OutboundMessage {
    /// A plain text message.
    pub fn text(author_kind: AuthorKind, agent_id: Option<AgentId>, text: MessageText) -> Self {
        Self {
            author_kind,
            agent_id,
            text,
            html: None,
            attachments: Vec::new(),
            template: None,
            channel: None,
        }
    }
}

/// What an agent sends: text (the caption, for a file), optionally one file by URL or a
/// WhatsApp template.
#[derive(Debug, Clone)]
pub struct AgentReply {
    /// The text, or the caption of the file.
    pub text: MessageText,
    /// Another channel of the customer's to send it by; `None`: the conversation's.
    pub channel: Option<ChannelKind>,
    /// Files by URL.
    pub attachments: Vec<crate::model::Attachment>,
    /// A WhatsApp template.
    pub template: Option<crate::model::MessageTemplate>,
}

/// A request to hand a conversation to a person.
#[derive(Debug, Clone)]
pub struct HandoffRequest {
    /// Why.
    pub reason: HandoffReason,
    /// Free text that came with the reason.
    pub reason_detail: Option<String>,
    /// A summary for the agent.
    pub summary: Option<String>,
    /// How urgent.
    pub priority: Priority,
    /// Skills the agent needs.
    pub required_skills: Vec<Skill>,
    /// What the customer is told, on their channel, right away; `None` when the router tells
    /// them (with their place in the queue) once the ticket is queued.
    pub notice: Option<MessageText>,
    /// The team whose queue gets it.
    pub team: Option<crate::model::Team>,
    /// The escalation rule that fired.
    pub rule: Option<String>,
    /// What the bot understood the customer wants.
    pub intent: Option<String>,
    /// What the bot collected.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The customer's language, when known.
    pub language: Option<String>,
}

/// How long a customer has been with the bot since it last took over (the conversation
/// started, or a person handed it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotSession {
    /// Customer messages since then.
    pub turns: u32,
    /// When it began.
    pub since: Timestamp,
}

/// A note on a ticket: why it was transferred, what the agent told the bot when handing
/// back, or an internal remark. Notes travel with the ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HandoffNote {
    /// `transfer`, `release` or `internal`.
    pub kind: String,
    /// Who wrote it.
    pub author_agent_id: Option<AgentId>,
    /// For a transfer: the team it went to.
    pub to_team: Option<String>,
    /// For a transfer: the agent it went to.
    pub to_agent_id: Option<AgentId>,
    /// The note.
    pub text: String,
    /// When.
    pub created_at: Timestamp,
}

/// One of the customer's conversations, as the agent's context shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// How many messages it has.
    pub message_count: u32,
    /// Its latest message's text, shortened.
    pub last_message: Option<String>,
}

/// Everything an agent needs to take over without asking the customer to repeat themselves.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HandoffContext {
    /// The ticket: reason, rule, summary, intent, collected fields, team, priority.
    pub handoff: Handoff,
    /// The conversation.
    pub conversation: Conversation,
    /// The customer with every identity known.
    pub customer: Customer,
    /// Its full transcript, oldest first (capped at [`HandoffContext::MAX_MESSAGES`]).
    pub messages: Vec<Message>,
    /// The customer's other conversations, on every channel, newest first.
    pub earlier_conversations: Vec<ConversationSummary>,
    /// Transfer and hand-back notes, oldest first.
    pub notes: Vec<HandoffNote>,
}

impl HandoffContext {
    /// The longest transcript the context carries; older messages stay in the conversation.
    pub const MAX_MESSAGES: u32 = 1000;
}

/// Where an open ticket is, as the router persists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketPlacement {
    /// Waiting in its team's queue.
    Queued,
    /// Offered to an agent, who has until `deadline` (if any) to accept.
    Offered {
        /// To whom.
        agent: AgentId,
        /// Since when.
        at: Timestamp,
        /// When the offer lapses.
        deadline: Option<Timestamp>,
    },
    /// Accepted by an agent.
    Owned {
        /// By whom.
        agent: AgentId,
        /// Since when.
        since: Timestamp,
    },
}

/// An open ticket's routing state: what the router persists after each decision and reads
/// back to rebuild itself after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRouting {
    /// The ticket.
    pub handoff: HandoffId,
    /// The team whose queue it is in (`general` for the general queue).
    pub team: String,
    /// Its priority now (overflow may raise it).
    pub priority: Priority,
    /// When it entered its current queue.
    pub queue_entered_at: Timestamp,
    /// Whether its queue's overflow rule was applied.
    pub overflowed: bool,
    /// Agents not to offer it to again.
    pub excluded: Vec<AgentId>,
    /// Where it is.
    pub placement: TicketPlacement,
}

/// What the router reads back on start: every open ticket with what routing needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTicket {
    /// The routing state.
    pub routing: TicketRouting,
    /// The conversation's channel.
    pub channel: ChannelKind,
    /// The ticket's own required skills.
    pub required_skills: Vec<Skill>,
    /// When it was requested.
    pub requested_at: Timestamp,
    /// Who last helped this customer before, and when (sticky routing).
    pub last_agent: Option<(AgentId, Timestamp)>,
}

/// A step of a ticket for analytics, written to the outbox with the router's state change.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingEvent {
    /// Which step.
    pub kind: crate::model::HandoffEventKind,
    /// The ticket.
    pub handoff: HandoffId,
    /// The agent involved.
    pub agent: Option<AgentId>,
    /// What else it says (the team transferred to, the overflow, ...).
    pub detail: Option<String>,
}

/// A notice the customer gets while waiting (their place in line, when people are back).
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingNotice {
    /// The ticket.
    pub handoff: HandoffId,
    /// What they are told.
    pub text: MessageText,
    /// The position told, if any.
    pub position: Option<u32>,
    /// The estimate told, if any.
    pub wait_ms: Option<i64>,
}

/// Everything one routing step changes, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingBatch {
    /// The new state of every ticket the step touched.
    pub tickets: Vec<TicketRouting>,
    /// Analytics events, in order.
    pub events: Vec<RoutingEvent>,
    /// Agents offered a ticket, with when (round robin survives restarts).
    pub offered_agents: Vec<(AgentId, Timestamp)>,
    /// Notes (transfer notes) to attach.
    pub notes: Vec<(HandoffId, HandoffNote)>,
    /// Notices for waiting customers.
    pub notices: Vec<WaitingNotice>,
    /// The routing version (see [`Store::routing_version`]) the router decided this step at:
    /// the write fails with [`StoreError::StaleRouting`] if another gateway instance changed
    /// routing since, and moves the version by exactly one otherwise. `None`: not checked.
    pub decided_at: Option<i64>,
}

impl RoutingBatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
            && self.events.is_empty()
            && self.offered_agents.is_empty()
            && self.notes.is_empty()
            && self.notices.is_empty()
    }
}

/// An agent's routing settings and state, read back on start.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRouting {
    /// The agent (skills, teams, capacity, hours, presence).
    pub agent: Agent,
    /// When they were last offered a ticket (round robin).
    pub last_offered_at: Option<Timestamp>,
}

/// Changes to an agent's routing settings; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct AgentUpdate {
    /// Skills.
    pub skills: Option<Vec<Skill>>,
    /// Teams.
    pub teams: Option<Vec<crate::model::Team>>,
    /// Overall capacity.
    pub max_concurrent: Option<u32>,
    /// Capacity per kind of work.
    pub capacity: Option<crate::model::WorkCapacity>,
    /// Working hours (`Some(None)` clears them).
    pub hours: Option<Option<crate::model::BusinessHours>>,
}

/// A new agent.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Display name.
    pub name: String,
    /// Address.
    pub email: EmailAddress,
    /// Skills.
    pub skills: Vec<Skill>,
    /// Teams.
    pub teams: Vec<crate::model::Team>,
    /// Capacity.
    pub max_concurrent: u32,
    /// Capacity per kind of work.
    pub capacity: crate::model::WorkCapacity,
    /// Working hours.
    pub hours: Option<crate::model::BusinessHours>,
}

/// What a bearer token or a session lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Watch the dashboard and the tickets of the teams they manage.
    Manager(UserId),
    /// Act as one agent.
    Agent(AgentId),
    /// Deliver inbound mail to /ingest/email, nothing else (for an MTA or mail provider).
    Ingest,
}

/// Who holds a token or a session: what they may do and, unless it is the configured admin
/// token (or a mail server's), which user they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// What they may do.
    pub role: Role,
    /// The person, for the audit log and team scoping.
    pub user: Option<UserId>,
}

/// A user to add. Agents are added with [`Store::create_agent`], which makes their user too.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Sign-in address.
    pub email: EmailAddress,
    /// Display name.
    pub name: String,
    /// Manager or admin.
    pub role: UserRole,
    /// For a manager, the teams they oversee.
    pub teams: Vec<Team>,
    /// Argon2id PHC string, if they sign in with a password.
    pub password_hash: Option<String>,
}

/// A user found by their sign-in address, with what the password check needs.
#[derive(Debug, Clone)]
pub struct LoginCandidate {
    /// The user.
    pub user: User,
    /// Their Argon2id PHC string, if they have a password.
    pub password_hash: Option<String>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New teams (managers; an agent's teams are changed on the agent).
    pub teams: Option<Vec<Team>>,
    /// Disable (true) or enable (false) the account.
    pub disabled: Option<bool>,
}

/// A browser session to open.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie's value.
    pub id_hash: String,
    /// Whose.
    pub user: UserId,
    /// The token state-changing requests must echo.
    pub csrf_token: String,
    /// When it ends unless used again.
    pub expires_at: Timestamp,
}

/// An open browser session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Whose (as they are now: role and teams changes apply at once).
    pub user: User,
    /// The token state-changing requests must echo.
    pub csrf_token: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it was last used (updated at most every few minutes).
    pub last_seen_at: Timestamp,
    /// When it ends unless used again.
    pub expires_at: Timestamp,
}

/// An API token as its owner sees it (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    /// Id to revoke it by.
    pub id: String,
    /// What it is for.
    pub label: String,
    /// When it was made.
    pub created_at: Timestamp,
}

/// One line of the audit log to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The user who acted (None: the configured admin token).
    pub actor_id: Option<UserId>,
    /// How the actor was known at the time.
    pub actor: String,
    /// What they did, e.g. `handoff.accept`, `queue.update`.
    pub action: String,
    /// What kind of thing it was done to, e.g. `handoff`, `queue`, `user`.
    pub target_kind: String,
    /// Which one.
    pub target_id: String,
    /// Anything else worth keeping (a note, the new settings), as JSON.
    pub detail: serde_json::Value,
}

/// A stored line of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    /// Position; newer lines have larger ids.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// The user who acted, if any.
    pub actor_id: Option<UserId>,
    /// How the actor was known at the time.
    pub actor: String,
    /// What they did.
    pub action: String,
    /// What kind of thing.
    pub target_kind: String,
    /// Which one.
    pub target_id: String,
    /// Anything else.
    pub detail: serde_json::Value,
}

/// Which audit lines to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only lines about this target (kind, id).
    pub target: Option<(String, String)>,
    /// Only lines older than this id (paging).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// What an agent (or an admin) does to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStep {
    /// Take a ticket offered to you.
    Accept,
    /// Close it.
    Resolve,
    /// Hand the conversation back to the bot.
    Release,
}

impl TicketStep {
    /// Whether the step is allowed from a ticket status.
    pub fn applies_to(self, status: HandoffStatus) -> bool {
        match self {
            TicketStep::Accept => status == HandoffStatus::Assigned,
            TicketStep::Resolve => {
                matches!(status, HandoffStatus::Assigned | HandoffStatus::Accepted)
            }
            TicketStep::Release => status.is_open(),
        }
    }

    /// The ticket's status afterwards.
    pub fn handoff_status(self) -> HandoffStatus {
        match self {
            TicketStep::Accept => HandoffStatus::Accepted,
            TicketStep::Resolve => HandoffStatus::Resolved,
            TicketStep::Release => HandoffStatus::Released,
        }
    }

    /// The conversation's status afterwards.
    pub fn conversation_status(self) -> ConversationStatus {
        match self {
            TicketStep::Accept => ConversationStatus::Agent,
            TicketStep::Resolve => ConversationStatus::Resolved,
            TicketStep::Release => ConversationStatus::Bot,
        }
    }

    /// The event it records.
    pub fn event(self) -> crate::model::HandoffEventKind {
        use crate::model::HandoffEventKind as K;
        match self {
            TicketStep::Accept => K::Accepted,
            TicketStep::Resolve => K::Resolved,
            TicketStep::Release => K::Released,
        }
    }

    /// The past participle, for messages: "accepted".
    pub fn done(self) -> &'static str {
        self.handoff_status().as_str()
    }
}

/// Filters for listing conversations.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// Only this channel.
    pub channel: Option<ChannelKind>,
    /// Only this status.
    pub status: Option<ConversationStatus>,
    /// Resume after this conversation (keyset pagination, newest first).
    pub before: Option<(Timestamp, ConversationId)>,
    /// At most this many.
    pub limit: u32,
}

/// A message waiting to go out, with what a connector needs to send it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// The conversation's channel.
    pub channel: ChannelKind,
    /// How many attempts were made before this one.
    pub attempts: u32,
    /// The WhatsApp template to send instead of the text, if the agent chose one.
    pub template: Option<crate::model::MessageTemplate>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// The channel took it (with the platform's id for it, if it gave one).
    Sent(Option<String>),
    /// Try again at the given time.
    RetryAt(Timestamp, String),
    /// Give up.
    Failed(String),
}

/// Conversations active in a period and how many of them were handed to a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConversationActivity {
    /// Conversations with at least one customer message in the period.
    pub active: u64,
    /// Of those, conversations with a handoff requested in the period.
    pub handed_off: u64,
}

/// An event in the outbox, with its position.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// Position in the outbox; entries ship in this order.
    pub seq: i64,
    /// The event, or why its stored payload no longer parses (a hand-edited database, or a
    /// row written by a newer version): such a row must not block the ones behind it.
    pub event: Result<HandoffEvent, String>,
}

/// An event the shipper set aside: ClickHouse refused it as bad data, or its stored payload
/// no longer parses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// Its position in the outbox when it was set aside.
    pub seq: i64,
    /// The event's id, as stored.
    pub event_id: String,
    /// The stored payload (event metadata: never what a customer wrote).
    pub payload: String,
    /// Why: ClickHouse's error, or the decoder's, at most 2 KiB.
    pub error: String,
    /// When the event was written.
    pub created_at: Timestamp,
    /// When it was set aside.
    pub failed_at: Timestamp,
}

/// The store interface. See the module docs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- customers and inbound messages ---

    /// Stores an inbound message, creating the customer and conversation when needed.
    /// Returns only after the message is durably committed. A redelivery (same channel and
    /// external id) is recognized and stored nothing.
    async fn ingest(&self, inbound: InboundMessage) -> Result<IngestReceipt, StoreError>;

    /// Starts a web chat conversation for a new visitor, keeping the hash of its access token.
    async fn create_web_conversation(
        &self,
        sender: SenderProfile,
        token_hash: String,
    ) -> Result<Conversation, StoreError>;

    /// The stored hash of a web chat conversation's access token.
    async fn widget_token_hash(&self, id: ConversationId) -> Result<Option<String>, StoreError>;

    /// What a widget message needs before it is stored: the conversation's token hash and its
    /// visitor's web chat identity; `None` when the conversation does not exist or has no
    /// token. The default asks three questions; a backend can answer in one (the widget's hot
    /// path).
    async fn widget_visitor(
        &self,
        id: ConversationId,
    ) -> Result<Option<(String, Identity)>, StoreError> {
        let Some(hash) = self.widget_token_hash(id).await? else {
            return Ok(None);
        };
        let conversation = self.conversation(id).await?;
        let customer = self.customer(conversation.customer_id).await?;
        Ok(customer
            .identities
            .into_iter()
            .find(|i| i.kind == crate::model::IdentityKind::Channel(ChannelKind::WebChat))
            .map(|identity| (hash, identity)))
    }

    /// A customer with all their identities.
    async fn customer(&self, id: crate::model::CustomerId) -> Result<Customer, StoreError>;

    // --- conversations and messages ---

    /// One conversation.
    async fn conversation(&self, id: ConversationId) -> Result<Conversation, StoreError>;

    /// Conversations, newest first.
    async fn list_conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// A conversation's messages in order, optionally only those after a given message.
    async fn messages(
        &self,
        id: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// A conversation with its latest `limit` messages, oldest first, in one read: what the
    /// pipeline needs for every inbound message.
    async fn conversation_with_recent(
        &self,
        id: ConversationId,
        limit: u32,
    ) -> Result<(Conversation, Vec<Message>), StoreError>;

    /// One message.
    async fn message(&self, id: MessageId) -> Result<Message, StoreError>;

    /// Stores a bot or system message for delivery.
    async fn append_outbound(
        &self,
        id: ConversationId,
        out: OutboundMessage,
    ) -> Result<Message, StoreError>;

    /// Stores an agent's reply: only while a person owns the conversation and, when `agent`
    /// is given, only by the agent who owns it. Records the first reply of a handoff.
    async fn append_agent_reply(
        &self,
        id: ConversationId,
        agent: Option<AgentId>,
        reply: AgentReply,
    ) -> Result<Message, StoreError>;

    /// Inbound messages not yet handled by the bot/handoff pipeline, oldest first.
    async fn unprocessed_inbound(
        &self,
        limit: u32,
    ) -> Result<Vec<(MessageId, ConversationId)>, StoreError>;

    /// Stores the bot's replies to an inbound message and marks it handled, in one write, so a
    /// crash never leaves a message answered but unmarked (answered twice after restart).
    /// Replies are dropped if a person took the conversation over meanwhile.
    async fn complete_inbound(
        &self,
        conversation: &Conversation,
        inbound: MessageId,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<Message>, StoreError>;

    /// Marks an inbound message handled.
    async fn mark_processed(&self, id: MessageId) -> Result<(), StoreError>;

    // --- delivery ---

    /// Outbound messages due for a delivery attempt.
    async fn due_deliveries(&self, now: Timestamp, limit: u32)
    -> Result<Vec<Delivery>, StoreError>;

    /// Records the outcomes of delivery attempts, all in one write.
    async fn record_deliveries(
        &self,
        outcomes: Vec<(MessageId, DeliveryOutcome)>,
    ) -> Result<(), StoreError>;

    // --- handoffs ---

    /// Hands a conversation in `bot` status to the queue, tells the customer, and records
    /// the `requested` and `queued` events. Returns the ticket and the notice message, if
    /// one was given.
    async fn request_handoff(
        &self,
        id: ConversationId,
        request: HandoffRequest,
    ) -> Result<(Handoff, Option<Message>), StoreError>;

    /// Moves a ticket one step (accept, resolve, release), with the conversation and the event.
    /// `agent` is the acting agent, who must own the ticket, or `None` for an admin; accepting
    /// always needs the agent.
    async fn ticket_step(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, StoreError>;

    /// One ticket.
    async fn handoff(&self, id: HandoffId) -> Result<Handoff, StoreError>;

    /// The conversation's latest ticket, open or not.
    async fn latest_handoff(&self, id: ConversationId) -> Result<Option<Handoff>, StoreError>;

    /// Tickets, oldest request first, optionally of one status.
    async fn list_handoffs(
        &self,
        status: Option<HandoffStatus>,
        limit: u32,
    ) -> Result<Vec<Handoff>, StoreError>;

    // --- users, sessions, tokens of users, audit log ---

    /// Adds a manager or admin (agents come with [`Store::create_agent`]). A taken email is
    /// a [`StoreError::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;

    /// One user.
    async fn user(&self, id: UserId) -> Result<User, StoreError>;

    /// Every user, oldest first.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// The user who signs in with this address, if any.
    async fn login_candidate(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<LoginCandidate>, StoreError>;

    /// Sets (or replaces) a user's password hash and closes all their sessions.
    async fn set_password(&self, id: UserId, password_hash: String) -> Result<(), StoreError>;

    /// Changes what a user may do; disabling closes their sessions and stops their tokens.
    async fn update_user(&self, id: UserId, update: UserUpdate) -> Result<User, StoreError>;

    /// Opens a browser session.
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// The live session with this id hash (not expired, user not disabled).
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;

    /// Marks a session used now and moves its end to `expires_at`.
    async fn touch_session(&self, id_hash: &str, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Closes a session (logout).
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;

    /// Stores a token that acts as `user`; returns its id.
    async fn insert_user_token(
        &self,
        token_hash: &str,
        user: UserId,
        label: &str,
    ) -> Result<TokenInfo, StoreError>;

    /// A user's live tokens.
    async fn user_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError>;

    /// Revokes a token of `user`; returns its hash if it was live (so caches can drop it).
    async fn revoke_token(&self, user: UserId, id: &str) -> Result<Option<String>, StoreError>;

    /// Appends to the audit log.
    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError>;

    /// Reads the audit log, newest first.
    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    // --- agents and tokens ---

    /// Adds an agent (offline until they say otherwise).
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError>;

    /// One agent.
    async fn agent(&self, id: AgentId) -> Result<Agent, StoreError>;

    /// Every agent.
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;

    /// Sets an agent's presence.
    async fn set_presence(&self, id: AgentId, presence: Presence) -> Result<Agent, StoreError>;

    /// Stores a token hash for a role; idempotent for the same hash.
    async fn insert_token(
        &self,
        token_hash: &str,
        role: Role,
        label: &str,
    ) -> Result<(), StoreError>;

    /// Who holds a (non-revoked) token hash; `None` also when its user is disabled.
    async fn role_for_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError>;

    // --- event outbox ---

    /// The oldest events waiting to ship whose position is after `after` (0: from the start).
    async fn outbox_batch(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Forgets shipped events, by position. Only these: a range would also drop an event that
    /// committed late with a lower position (possible with a concurrent-writer backend).
    async fn outbox_ack(&self, seqs: Vec<i64>) -> Result<(), StoreError>;

    /// Moves events ClickHouse refused as bad data out of the outbox into the dead letters,
    /// each with the reason, in one transaction. Positions no longer in the outbox are skipped.
    async fn outbox_dead_letter(&self, letters: Vec<(i64, String)>) -> Result<(), StoreError>;

    /// How many events are in the dead letters.
    async fn dead_letter_count(&self) -> Result<u64, StoreError>;

    /// The dead letters, oldest position first, at most `limit`.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts every dead letter back into the outbox, behind the events waiting there, and
    /// forgets it, in one transaction; returns how many. For once the cause is put right (a
    /// table or a setting in ClickHouse): the shipper sends them again, ClickHouse
    /// deduplicates any it already holds, and those it refuses again come back here.
    async fn dead_letters_requeue(&self) -> Result<u64, StoreError>;

    /// How many events wait to ship.
    async fn outbox_len(&self) -> Result<u64, StoreError>;

    // --- reports ---

    /// Conversations with at least one customer message in `[from, to)` (optionally on one
    /// channel), and how many of those had a handoff requested in the same period: the
    /// denominator of bot containment, which ClickHouse (handoff events only) cannot know.
    async fn conversation_activity(
        &self,
        from: Timestamp,
        to: Timestamp,
        channel: Option<ChannelKind>,
    ) -> Result<ConversationActivity, StoreError>;

    // --- messaging platforms ---

    /// Who a conversation's replies go to on its channel (the customer's platform id there)
    /// and when the customer last wrote (platforms only allow replies within a window).
    async fn channel_recipient(
        &self,
        conversation: ConversationId,
    ) -> Result<ChannelRecipient, StoreError>;

    /// A platform's receipt for a message Baton sent: moves its delivery state forward (sent,
    /// delivered, read; failed from any of them). Returns whether a message matched.
    async fn apply_receipt(
        &self,
        channel: ChannelKind,
        external_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError>;

    /// A customer edited a message: the new text replaces the stored one, which is kept in the
    /// edit history. Only the author's own message changes. Returns whether one did.
    async fn edit_inbound(
        &self,
        channel: ChannelKind,
        external_id: &str,
        sender: &Identity,
        text: MessageText,
    ) -> Result<bool, StoreError>;

    // --- email ---

    /// Threads an inbound email into its conversation (strongest signal first; a new
    /// conversation when none matches) and stores it with its original, attachments and
    /// Message-ID. A redelivery (same Message-ID) stores nothing.
    async fn ingest_email(&self, email: InboundEmail) -> Result<EmailReceipt, StoreError>;

    /// Everything an outgoing mail of the conversation needs to thread.
    async fn email_thread(&self, conversation: ConversationId) -> Result<EmailThread, StoreError>;

    /// Remembers the Message-ID of a mail Baton sent, so replies to it thread.
    async fn remember_sent_email(
        &self,
        message: MessageId,
        conversation: ConversationId,
        message_id_header: &str,
    ) -> Result<(), StoreError>;

    /// A stored attachment.
    async fn file(&self, id: &str) -> Result<StoredFile, StoreError>;

    /// The highest IMAP UID imported from a mailbox under a UIDVALIDITY.
    async fn imap_position(&self, mailbox: &str, uid_validity: u32) -> Result<u32, StoreError>;

    /// Records that every UID up to `last_uid` was imported.
    async fn set_imap_position(
        &self,
        mailbox: &str,
        uid_validity: u32,
        last_uid: u32,
    ) -> Result<(), StoreError>;

    /// A counter that moves with every routing change any gateway instance sharing the store
    /// makes (tickets offered, accepted, closed; agents' presence and capacity), so a router
    /// can tell whether the state it holds is still the stored one. `None` for a store that
    /// only one instance uses (SQLite): its router is the only one and never re-reads.
    async fn routing_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Every open ticket's routing state and every agent's, for the router to rebuild itself.
    async fn routing_state(&self) -> Result<(Vec<AgentRouting>, Vec<OpenTicket>), StoreError>;

    /// Writes one routing step: ticket states, events, notes and notices, all or nothing.
    /// Fails with `Conflict` if a ticket was closed meanwhile.
    async fn apply_routing(&self, batch: RoutingBatch) -> Result<Vec<Message>, StoreError>;

    /// Who last owned a ticket of this customer, and when it closed (sticky routing).
    async fn last_agent_of(
        &self,
        customer: crate::model::CustomerId,
    ) -> Result<Option<(AgentId, Timestamp)>, StoreError>;

    /// Queue settings by team (JSON), as stored.
    async fn queue_settings(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;

    /// Stores one queue's settings (JSON).
    async fn set_queue_settings(
        &self,
        team: String,
        settings: serde_json::Value,
    ) -> Result<(), StoreError>;

    /// Tickets of a team accepted since `since`: how many, and the median wait (ms) from
    /// request to acceptance. The waiting customers' estimates come from these.
    async fn recent_acceptances(
        &self,
        team: &str,
        since: Timestamp,
    ) -> Result<(u32, Option<i64>), StoreError>;

    /// Queued tickets whose customer has not written since `cutoff` (and that were requested
    /// before it): they have left.
    async fn silent_queued(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<HandoffId>, StoreError>;

    /// Marks a queued ticket abandoned and gives the conversation back to the bot.
    async fn abandon(&self, id: HandoffId) -> Result<Handoff, StoreError>;

    /// Adds a note to a ticket.
    async fn add_handoff_note(&self, id: HandoffId, note: HandoffNote) -> Result<(), StoreError>;

    /// Hands a conversation back to the bot with an optional note for it.
    async fn set_handback_note(
        &self,
        id: ConversationId,
        note: Option<String>,
    ) -> Result<(), StoreError>;

    /// Updates an agent's routing settings.
    async fn update_agent(&self, id: AgentId, update: AgentUpdate) -> Result<Agent, StoreError>;

    /// What waiting customers were last told: position, estimate, when.
    #[allow(clippy::type_complexity)]
    async fn told(
        &self,
        ids: Vec<HandoffId>,
    ) -> Result<
        std::collections::HashMap<HandoffId, (Option<u32>, Option<i64>, Option<Timestamp>)>,
        StoreError,
    >;

    /// Replaces a customer's tags.
    async fn set_customer_tags(
        &self,
        id: crate::model::CustomerId,
        tags: Vec<String>,
    ) -> Result<Customer, StoreError>;

    /// Records the bot's fallback streak on a conversation.
    async fn set_bot_fallbacks(&self, id: ConversationId, n: u32) -> Result<(), StoreError>;

    /// How long the customer has been with the bot since it last took over.
    async fn bot_session(&self, id: ConversationId) -> Result<BotSession, StoreError>;

    /// The stored escalation rules (JSON, in order); `None` if never set.
    async fn escalation_rules(&self) -> Result<Option<Vec<serde_json::Value>>, StoreError>;

    /// Replaces the escalation rules: `(name, rule as JSON)` in order.
    async fn set_escalation_rules(
        &self,
        rules: Vec<(String, serde_json::Value)>,
    ) -> Result<(), StoreError>;

    /// The context package of a ticket.
    async fn handoff_context(&self, id: HandoffId) -> Result<HandoffContext, StoreError>;

    /// Closes the store's connections, waiting for work in flight (at shutdown).
    async fn close(&self);
}

/// The bytes of a file that arrived inside a message (email attachments).
#[derive(Debug, Clone)]
pub struct FileData {
    /// Its name, if the sender gave one.
    pub name: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// The Content-ID an HTML body refers to it by.
    pub content_id: Option<String>,
    /// Shown inside the body (a `cid:` image) rather than as a separate file.
    pub inline: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// An inbound email, parsed and ready to be threaded and stored.
#[derive(Debug, Clone)]
pub struct InboundEmail {
    /// The message as every channel has it: channel email, the sender's address as identity,
    /// the Message-ID (or a hash of the mail) as external id, the visible (trimmed) text.
    pub message: InboundMessage,
    /// What can tie it to a conversation.
    pub signals: ThreadSignals,
    /// The decoded subject.
    pub subject: Option<String>,
    /// Set for auto-replies and bounces: stored, never answered.
    pub automated: Option<Automated>,
    /// The text before quotes and signatures were trimmed.
    pub full_text: Option<String>,
    /// The mail as received.
    pub raw: Vec<u8>,
    /// Attachment bytes, in the order of `message.attachments`.
    pub files: Vec<FileData>,
    /// What a reply to a resolved conversation does.
    pub reopen: ReopenPolicy,
    /// How far back (ms) the same-subject fallback looks for an open conversation.
    pub subject_window_ms: i64,
}

/// The result of storing an inbound email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EmailReceipt {
    /// Where it went, and whether it was a redelivery.
    #[serde(flatten)]
    pub receipt: IngestReceipt,
    /// Which signal found the conversation.
    pub thread_match: ThreadMatch,
    /// Whether the pipeline should look at it (false for auto-replies, bounces, duplicates).
    pub needs_processing: bool,
}

/// What an outgoing mail of a conversation needs to thread in the customer's mail client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailThread {
    /// The recipient: the sender of the latest inbound mail, else the customer's address.
    pub to: EmailAddress,
    /// The customer's name, if known.
    pub to_name: Option<String>,
    /// The conversation's subject.
    pub subject: Option<String>,
    /// The conversation's reply token (created now if it had none).
    pub reply_token: String,
    /// Message-IDs of the conversation's mails, oldest first.
    pub message_ids: Vec<String>,
    /// The Message-ID of the latest inbound mail, which this one answers.
    pub in_reply_to: Option<String>,
}

/// The customer's address on a conversation's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecipient {
    /// The platform's id for the customer (PSID, wa_id, chat id, phone number).
    pub external_id: String,
    /// When the customer's latest message arrived, if any.
    pub last_inbound_at: Option<Timestamp>,
}

/// A stored attachment's bytes and what they are.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The conversation it belongs to (for access checks).
    pub conversation_id: ConversationId,
    /// The file.
    pub file: FileData,
}

/// A store shared across the app.
pub type SharedStore = std::sync::Arc<dyn Store>;

/// The delivery status a new message starts with: inbound messages are received; replies wait
/// for the dispatcher, except on channels that deliver by storing (the API channel's clients
/// read replies back), where they are sent the moment they are stored.
pub(crate) fn initial_delivery_status(author: AuthorKind, channel: ChannelKind) -> DeliveryStatus {
    match author {
        AuthorKind::Customer => DeliveryStatus::Received,
        _ if !channel.pushes_replies() => DeliveryStatus::Sent,
        _ => DeliveryStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_offered_ticket_can_be_accepted_and_closed_tickets_stay_closed() {
        use HandoffStatus::*;
        let table = [
            (TicketStep::Accept, [false, true, false, false, false]),
            (TicketStep::Resolve, [false, true, true, false, false]),
            (TicketStep::Release, [true, true, true, false, false]),
        ];
        for (step, allowed) in table {
            for (status, want) in [Queued, Assigned, Accepted, Resolved, Released]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(step.applies_to(status), want, "{step:?} from {status}");
            }
        }
    }

    #[test]
    fn every_ticket_step_lands_the_conversation_where_the_lifecycle_allows() {
        // Accept comes from `assigned`; resolve and release from `agent` (or earlier states).
        assert!(ConversationStatus::Assigned.can_become(TicketStep::Accept.conversation_status()));
        assert!(ConversationStatus::Agent.can_become(TicketStep::Resolve.conversation_status()));
        assert!(ConversationStatus::Agent.can_become(TicketStep::Release.conversation_status()));
        assert!(ConversationStatus::Queued.can_become(TicketStep::Release.conversation_status()));
    }
}
