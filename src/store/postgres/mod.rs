//! The PostgreSQL store: one database shared by several gateway instances.
//!
//! Every method is one transaction on a pooled connection; PostgreSQL serializes what
//! SQLite's single writer serialized by itself:
//!
//! - rows a step reads and then changes are read `FOR UPDATE` (a ticket, its conversation), so
//!   two instances moving the same ticket wait for each other and the second sees the first's
//!   result;
//! - inbound messages take a transaction-scoped advisory lock on their sender, so two copies of
//!   one message, or two first messages of one new customer, arriving at two instances store
//!   one message and one customer;
//! - writes to the event outbox take one advisory lock until they commit, so outbox positions
//!   become visible in order and the shipper's cursor never passes an event still committing;
//! - only one instance at a time ships the outbox (it holds a session-level advisory lock on a
//!   connection of its own): every event reaches ClickHouse once, in order;
//! - outbound deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease, so two
//!   dispatchers never send the same message at once;
//! - every routing change bumps a version that routers compare before they decide (see
//!   [`Store::routing_version`]).
//!
//! Transactions take their locks in one order, so they cannot deadlock one another: the
//! routing version, tickets, conversations (storing a message touches its conversation), and
//! the outbox lock last.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::Mutex;

mod accounts;
mod email;
mod routing;

use super::rows::{
    check_owner, corrupt, dead_letter, decode_outbox_payload, encode_outbox_payload, json_col,
    opt_ts, parse_col, parse_opt_col, parse_skills, prefixed_conversation, row_agent,
    row_conversation, row_handoff, row_message, skills_json, truncate_error, ts,
};
use super::*;
use crate::model::{CustomerId, HandoffEventKind, IdentityKind};

/// Advisory lock keys (one namespace per purpose, so they never collide with each other).
const LOCK_OUTBOX: i64 = 0x6261_746f_6e01; // "baton" 01: outbox writers, until commit
const LOCK_SHIPPER: i64 = 0x6261_746f_6e02; // "baton" 02: the one instance that ships
const LOCK_SENDER: i32 = 0x6261_7403; // with a hash of the sender's identity

/// How long a claimed delivery is hidden from other dispatchers before it counts as lost (the
/// instance that claimed it died) and is tried again.
const DELIVERY_LEASE_MS: i64 = 60_000;

/// The most outbox rows one acknowledging statement deletes.
const ACK_PIECE: usize = 5_000;

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// The connection that holds (true) or asks for (false) the shipper's lock.
    shipper: Mutex<Option<(PgConnection, bool)>>,
}

/// Whether a PostgreSQL error code (SQLSTATE) means the server cannot serve right now rather
/// than a bad statement: connection exceptions (08), insufficient resources such as a full disk
/// (53), operator intervention such as a shutdown (57), system errors (58), a read-only server
/// (25006), and transaction rollbacks from deadlocks or serialization failures (40), which the
/// sender's retry resolves.
pub(super) fn unavailable(code: &str) -> bool {
    matches!(&code[..code.len().min(2)], "08" | "53" | "57" | "58" | "40") || code == "25006"
}

/// Whether a URL names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl PgStore {
    /// Connects (creating the database when it does not exist and the user may), applies
    /// migrations and returns the store. Errors never carry the URL (it may hold a password).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|_| {
            StoreError::Corrupt("the database URL does not parse as a PostgreSQL URL".into())
        })?;
        ensure_database(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            options,
            shipper: Mutex::new(None),
        })
    }

    /// Applies migrations to a database and closes it (`baton migrate`).
    pub async fn migrate(url: &str) -> Result<(), StoreError> {
        let store = Self::open(url).await?;
        store.close().await;
        Ok(())
    }

    /// Closes the pool (and gives up shipping), waiting for in-flight work.
    pub async fn close(&self) {
        if let Some((conn, _)) = self.shipper.lock().await.take() {
            let _ = conn.close().await;
        }
        self.pool.close().await;
    }

    /// Runs `work` in a transaction and commits it; on an error the transaction rolls back.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let mut tx = self.pool.begin().await?;
        let result = work(&mut tx).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Like [`PgStore::write`], for work of exactly one statement: no BEGIN and COMMIT.
    async fn write_one<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let mut conn = self.pool.acquire().await?;
        work(&mut conn).await
    }

    /// Whether this instance is the one that ships the outbox: holds the shipper's lock, taking
    /// it when nobody does. The lock lives on a connection of its own and goes with it, so an
    /// instance that dies (or loses its connection) hands shipping to the next one that asks.
    /// The others keep their connection and ask again on it at each read.
    async fn is_shipper(&self) -> Result<bool, StoreError> {
        let mut held = self.shipper.lock().await;
        if let Some((conn, true)) = held.as_mut() {
            if conn.ping().await.is_ok() {
                return Ok(true);
            }
            // Gone, and the lock with it.
            *held = None;
        }
        let (mut conn, _) = match held.take() {
            Some(held) => held,
            None => (PgConnection::connect_with(&self.options).await?, false),
        };
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
            .bind(LOCK_SHIPPER)
            .fetch_one(&mut conn)
            .await?
            .try_get("got")?;
        if got {
            tracing::info!("this instance ships the event outbox");
        }
        *held = Some((conn, got));
        Ok(got)
    }
}

/// Creates the database of `options` when it does not exist yet (as the ClickHouse database
/// is), through the server's `postgres` database. Another instance creating it at the same
/// moment is fine.
async fn ensure_database(options: &PgConnectOptions) -> Result<(), StoreError> {
    match PgConnection::connect_with(options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!("created the PostgreSQL database"),
        // duplicate_database, or unique_violation when two CREATE DATABASE race.
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
        Err(e) => return Err(e.into()),
    }
    let _ = admin.close().await;
    Ok(())
}

/// Applies the migrations, one instance at a time (sqlx takes an advisory lock itself).
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}

/// Serializes inbound messages of one sender across instances until the transaction ends.
async fn lock_sender(conn: &mut PgConnection, identity: &Identity) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_SENDER)
        .bind(format!("{}:{}", identity.kind.as_str(), identity.value))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether an error is a unique violation (a race another instance won).
fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
}

// ---------------------------------------------------------------------------------------------
// Inbound.

/// The general inbound path: recognizes redeliveries, records what a sender brings (name,
/// email, phone), reopens or starts the conversation, and stores the message.
async fn ingest_one(
    conn: &mut PgConnection,
    m: &InboundMessage,
    now: Timestamp,
) -> Result<IngestReceipt, StoreError> {
    let channel = m.channel.as_str();
    let message_id = MessageId::new();
    let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
    let row = sqlx::query(
        "SELECT
             (SELECT id FROM messages WHERE channel = $1 AND external_id = $2 AND direction = 'in') AS dup_id,
             (SELECT conversation_id FROM messages
              WHERE channel = $1 AND external_id = $2 AND direction = 'in') AS dup_conversation,
             i.customer_id AS customer_id,
             c.display_name IS NULL AS unnamed,
             (SELECT id FROM conversations
              WHERE customer_id = i.customer_id AND channel = $1 AND status != 'resolved'
              ORDER BY created_at DESC LIMIT 1) AS open_conversation
         FROM (SELECT 1) AS one
         LEFT JOIN identities i ON i.kind = $3 AND i.value = $4
         LEFT JOIN customers c ON c.id = i.customer_id",
    )
    .bind(channel)
    .bind(m.external_id.as_deref())
    .bind(m.sender.identity.kind.as_str())
    .bind(&m.sender.identity.value)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(dup) = parse_opt_col::<MessageId>(&row, "dup_id")? {
        return Ok(IngestReceipt {
            conversation_id: parse_col(&row, "dup_conversation")?,
            message_id: dup,
            duplicate: true,
        });
    }

    let conversation_id = match m.conversation_id {
        Some(id) => {
            let row = sqlx::query("SELECT channel, status FROM conversations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::NotFound("conversation"))?;
            let conv_channel: ChannelKind = parse_col(&row, "channel")?;
            if conv_channel != m.channel {
                return Err(StoreError::Conflict(
                    "the conversation is on another channel".into(),
                ));
            }
            let status: ConversationStatus = parse_col(&row, "status")?;
            if status == ConversationStatus::Resolved {
                // The customer wrote again: the conversation reopens with the bot.
                set_conversation_status(conn, id, status, ConversationStatus::Bot, now).await?;
            }
            id
        }
        None => match parse_opt_col::<CustomerId>(&row, "customer_id")? {
            Some(customer) => {
                let unnamed: bool = row.try_get::<Option<bool>, _>("unnamed")?.unwrap_or(false);
                learn_about_customer(conn, customer, &m.sender, unnamed, now).await?;
                match parse_opt_col::<ConversationId>(&row, "open_conversation")? {
                    Some(open) => open,
                    None => insert_conversation(conn, m.channel, customer, None, now).await?,
                }
            }
            None => {
                let customer = resolve_customer(conn, &m.sender, now).await?;
                open_conversation_or_new(conn, m.channel, customer, now).await?
            }
        },
    };

    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, text, html, attachments,
                               external_id, delivery_status, needs_processing, created_at)
         VALUES ($1, $2, $3, 'in', 'customer', $4, $5, $6, $7, 'received', TRUE, $8)",
    )
    .bind(message_id.to_string())
    .bind(conversation_id.to_string())
    .bind(channel)
    .bind(m.text.as_str())
    .bind(m.html.as_deref())
    .bind(&attachments)
    .bind(m.external_id.as_deref())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(IngestReceipt {
        conversation_id,
        message_id,
        duplicate: false,
    })
}

/// The customer's open conversation on a channel, or a new one.
async fn open_conversation_or_new(
    conn: &mut PgConnection,
    channel: ChannelKind,
    customer: CustomerId,
    now: Timestamp,
) -> Result<ConversationId, StoreError> {
    let open = sqlx::query(
        "SELECT id FROM conversations WHERE customer_id = $1 AND channel = $2 AND status != 'resolved'
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(customer.to_string())
    .bind(channel.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    match open {
        Some(row) => parse_col(&row, "id"),
        None => insert_conversation(conn, channel, customer, None, now).await,
    }
}

/// Records what a known customer told us this time: a name if we had none, an email address
/// or phone number not yet on file. A handle that belongs to someone else stays theirs.
async fn learn_about_customer(
    conn: &mut PgConnection,
    customer: CustomerId,
    sender: &SenderProfile,
    unnamed: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    if unnamed && let Some(name) = &sender.display_name {
        sqlx::query(
            "UPDATE customers SET display_name = $1 WHERE id = $2 AND display_name IS NULL",
        )
        .bind(name)
        .bind(customer.to_string())
        .execute(&mut *conn)
        .await?;
    }
    let shared = sender
        .email
        .iter()
        .map(Identity::email)
        .chain(sender.phone.iter().map(Identity::phone));
    for identity in shared {
        sqlx::query("INSERT INTO identities (kind, value, customer_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(identity.kind.as_str())
            .bind(&identity.value)
            .bind(customer.to_string())
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Finds the customer behind a sender, or creates one. A known email address or phone
/// number links a new channel identity to the existing customer.
async fn resolve_customer(
    conn: &mut PgConnection,
    sender: &SenderProfile,
    now: Timestamp,
) -> Result<CustomerId, StoreError> {
    let mut shared: Vec<Identity> = Vec::new();
    if let Some(email) = &sender.email {
        shared.push(Identity::email(email));
    }
    if let Some(phone) = &sender.phone {
        shared.push(Identity::phone(phone));
    }

    let mut customer = find_identity(conn, &sender.identity).await?;
    if customer.is_none() {
        for identity in &shared {
            if let Some(found) = find_identity(conn, identity).await? {
                customer = Some(found);
                break;
            }
        }
    }
    let customer = match customer {
        Some(c) => c,
        None => {
            let id = CustomerId::new();
            sqlx::query("INSERT INTO customers (id, display_name, created_at) VALUES ($1, $2, $3)")
                .bind(id.to_string())
                .bind(sender.display_name.as_deref())
                .bind(now.as_millis())
                .execute(&mut *conn)
                .await?;
            id
        }
    };
    // Record every handle we learned. A handle that already belongs to someone else stays
    // theirs: two customers are never merged on a guess.
    for identity in std::iter::once(&sender.identity).chain(shared.iter()) {
        sqlx::query("INSERT INTO identities (kind, value, customer_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(identity.kind.as_str())
            .bind(&identity.value)
            .bind(customer.to_string())
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
    }
    if let Some(name) = &sender.display_name {
        sqlx::query(
            "UPDATE customers SET display_name = $1 WHERE id = $2 AND display_name IS NULL",
        )
        .bind(name)
        .bind(customer.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(customer)
}

async fn find_identity(
    conn: &mut PgConnection,
    identity: &Identity,
) -> Result<Option<CustomerId>, StoreError> {
    let row = sqlx::query("SELECT customer_id FROM identities WHERE kind = $1 AND value = $2")
        .bind(identity.kind.as_str())
        .bind(&identity.value)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse_col(&r, "customer_id")).transpose()
}

async fn insert_conversation(
    conn: &mut PgConnection,
    channel: ChannelKind,
    customer: CustomerId,
    widget_token_hash: Option<&str>,
    now: Timestamp,
) -> Result<ConversationId, StoreError> {
    let id = ConversationId::new();
    sqlx::query(
        "INSERT INTO conversations (id, channel, status, customer_id, widget_token_hash, created_at, updated_at)
         VALUES ($1, $2, 'bot', $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(channel.as_str())
    .bind(customer.to_string())
    .bind(widget_token_hash)
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Moves a conversation from `from` to `to`, checking the lifecycle and that nobody changed
/// the status in between.
async fn set_conversation_status(
    conn: &mut PgConnection,
    id: ConversationId,
    from: ConversationStatus,
    to: ConversationStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    from.transition(to)?;
    let done = sqlx::query(
        "UPDATE conversations SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(now.as_millis())
    .bind(id.to_string())
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(
            "the conversation changed meanwhile".into(),
        ));
    }
    Ok(())
}

/// Fetches one row by id and maps it; `what` names it in the not-found error.
async fn load_one<T>(
    conn: &mut PgConnection,
    sql: &'static str,
    id: String,
    what: &'static str,
    map: fn(&PgRow) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let row = sqlx::query(sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound(what))?;
    map(&row)
}

async fn load_conversation(
    conn: &mut PgConnection,
    id: ConversationId,
) -> Result<Conversation, StoreError> {
    let sql = "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at,
                      bot_fallbacks, handed_back_at, handback_note
               FROM conversations WHERE id = $1";
    load_one(conn, sql, id.to_string(), "conversation", row_conversation).await
}

async fn load_handoff(conn: &mut PgConnection, id: HandoffId) -> Result<Handoff, StoreError> {
    load_one(
        conn,
        "SELECT * FROM handoffs WHERE id = $1",
        id.to_string(),
        "handoff",
        row_handoff,
    )
    .await
}

/// A ticket, locked until the transaction ends: the step that reads it and then changes it
/// runs alone, whichever instance another step of the same ticket runs on.
async fn load_handoff_locked(
    conn: &mut PgConnection,
    id: HandoffId,
) -> Result<Handoff, StoreError> {
    load_one(
        conn,
        "SELECT * FROM handoffs WHERE id = $1 FOR UPDATE",
        id.to_string(),
        "handoff",
        row_handoff,
    )
    .await
}

/// A conversation, locked until the transaction ends (see [`load_handoff_locked`]).
async fn load_conversation_locked(
    conn: &mut PgConnection,
    id: ConversationId,
) -> Result<Conversation, StoreError> {
    let sql = "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at,
                      bot_fallbacks, handed_back_at, handback_note
               FROM conversations WHERE id = $1 FOR UPDATE";
    load_one(conn, sql, id.to_string(), "conversation", row_conversation).await
}

/// Moves the routing version on (see [`Store::routing_version`]), in the caller's transaction;
/// the row lock also orders routing changes of all instances one after the other.
async fn bump_routing(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("UPDATE routing_version SET version = version + 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn load_message(conn: &mut PgConnection, id: MessageId) -> Result<Message, StoreError> {
    load_one(
        conn,
        "SELECT * FROM messages WHERE id = $1",
        id.to_string(),
        "message",
        row_message,
    )
    .await
}

async fn load_agent(conn: &mut PgConnection, id: AgentId) -> Result<Agent, StoreError> {
    load_one(
        conn,
        "SELECT * FROM agents WHERE id = $1",
        id.to_string(),
        "agent",
        row_agent,
    )
    .await
}

async fn insert_outbound(
    conn: &mut PgConnection,
    conversation: &Conversation,
    out: &OutboundMessage,
    now: Timestamp,
) -> Result<MessageId, StoreError> {
    let id = MessageId::new();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, agent_id, text, html,
                               attachments, template, delivery_status, next_attempt_at, created_at)
         VALUES ($1, $2, $3, 'out', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id.to_string())
    .bind(conversation.id.to_string())
    .bind(out.channel.unwrap_or(conversation.channel).as_str())
    .bind(out.author_kind.as_str())
    .bind(out.agent_id.map(|a| a.to_string()))
    .bind(out.text.as_str())
    .bind(out.html.as_deref())
    .bind(serde_json::to_string(&out.attachments).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    .bind(
        out.template
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )
    .bind(initial_delivery_status(out.author_kind, out.channel.unwrap_or(conversation.channel)).as_str())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Appends a handoff event to the outbox, in the caller's transaction.
async fn emit(
    conn: &mut PgConnection,
    kind: HandoffEventKind,
    handoff: &Handoff,
    channel: ChannelKind,
    now: Timestamp,
) -> Result<(), StoreError> {
    let event = HandoffEvent::new(
        kind,
        handoff.id,
        handoff.conversation_id,
        channel,
        handoff.reason,
        handoff.priority,
        handoff.assigned_agent_id,
        handoff.requested_at,
        now,
    )
    .with(handoff.team.as_deref(), handoff.rule.as_deref());
    emit_event(conn, &event, now).await
}

/// Appends a prepared event to the outbox, in the caller's transaction.
async fn emit_event(
    conn: &mut PgConnection,
    event: &HandoffEvent,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = encode_outbox_payload(event);
    // Held until COMMIT: positions are handed out and become visible in the same order, so
    // the shipper, reading after the last position it saw, never skips one still committing.
    // Every transaction writes its events last, so this is the last lock it takes and it
    // never waits for another lock while holding this one (no deadlock through it).
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_OUTBOX)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO event_outbox (event_id, payload, created_at) VALUES ($1, $2, $3)")
        .bind(event.event_id.to_string())
        .bind(payload)
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ingest(&self, inbound: InboundMessage) -> Result<IngestReceipt, StoreError> {
        let inbound = std::sync::Arc::new(inbound);
        let mut retried = false;
        loop {
            let m = inbound.clone();
            let result = self
                .write(move |tx| {
                    Box::pin(async move {
                        lock_sender(&mut *tx, &m.sender.identity).await?;
                        ingest_one(tx, &m, Timestamp::now()).await
                    })
                })
                .await;
            match result {
                // The same external id from another sender committed meanwhile: once more
                // finds it and answers `duplicate`, as the single writer would have.
                Err(e) if !retried && is_unique_violation(&e) => retried = true,
                other => return other,
            }
        }
    }

    async fn create_web_conversation(
        &self,
        sender: SenderProfile,
        token_hash: String,
    ) -> Result<Conversation, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                lock_sender(&mut *tx, &sender.identity).await?;
                let customer = resolve_customer(&mut *tx, &sender, now).await?;
                let id = insert_conversation(
                    &mut *tx,
                    ChannelKind::WebChat,
                    customer,
                    Some(&token_hash),
                    now,
                )
                .await?;
                let conversation = load_conversation(&mut *tx, id).await?;
                Ok(conversation)
            })
        })
        .await
    }

    async fn widget_token_hash(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT widget_token_hash FROM conversations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get("widget_token_hash"))
            .transpose()?
            .flatten())
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT id, display_name, tags, created_at FROM customers WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::NotFound("customer"))?;
        let identities = sqlx::query(
            "SELECT kind, value FROM identities WHERE customer_id = $1 ORDER BY created_at, kind",
        )
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Identity {
                kind: IdentityKind::parse(&kind).map_err(corrupt)?,
                value: r.try_get("value")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Customer {
            id,
            display_name: row.try_get("display_name")?,
            identities,
            tags: json_col(&row, "tags")?,
            created_at: ts(&row, "created_at")?,
        })
    }

    async fn conversation(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_conversation(&mut conn, id).await
    }

    async fn list_conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<Conversation>, StoreError> {
        let (before_ts, before_id) = match filter.before {
            Some((t, id)) => (Some(t.as_millis()), Some(id.to_string())),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at,
                    bot_fallbacks, handed_back_at, handback_note
             FROM conversations
             WHERE ($1 IS NULL OR channel = $1)
               AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR (created_at, id) < ($3, $4))
             ORDER BY created_at DESC, id DESC
             LIMIT $5",
        )
        .bind(filter.channel.map(ChannelKind::as_str))
        .bind(filter.status.map(ConversationStatus::as_str))
        .bind(before_ts)
        .bind(before_id)
        .bind(filter.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_conversation).collect()
    }

    async fn messages(
        &self,
        id: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        // Message ids are UUIDv7 and created_at is non-decreasing per store, so (created_at, id)
        // orders messages the way they were stored.
        let rows = sqlx::query(
            "SELECT * FROM messages
             WHERE conversation_id = $1
               AND ($2 IS NULL OR (created_at, id) > (SELECT created_at, id FROM messages WHERE id = $2))
             ORDER BY created_at, id
             LIMIT $3",
        )
        .bind(id.to_string())
        .bind(after.map(|a| a.to_string()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_message).collect()
    }

    async fn conversation_with_recent(
        &self,
        id: ConversationId,
        limit: u32,
    ) -> Result<(Conversation, Vec<Message>), StoreError> {
        let rows = sqlx::query(
            "SELECT c.id AS c_id, c.channel AS c_channel, c.status AS c_status, c.customer_id AS c_customer_id,
                    c.assigned_agent_id AS c_assigned_agent_id, c.subject AS c_subject,
                    c.created_at AS c_created_at, c.updated_at AS c_updated_at,
                    c.bot_fallbacks AS c_bot_fallbacks, c.handed_back_at AS c_handed_back_at,
                    c.handback_note AS c_handback_note, m.*
             FROM conversations c
             LEFT JOIN (SELECT * FROM messages WHERE conversation_id = $1
                        ORDER BY created_at DESC, id DESC LIMIT $2) m ON TRUE
             WHERE c.id = $1
             ORDER BY m.created_at, m.id",
        )
        .bind(id.to_string())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or(StoreError::NotFound("conversation"))?;
        let conversation = prefixed_conversation(first, "c_")?;
        let messages = rows
            .iter()
            .filter(|r| {
                r.try_get::<Option<String>, _>("id")
                    .ok()
                    .flatten()
                    .is_some()
            })
            .map(row_message)
            .collect::<Result<_, _>>()?;
        Ok((conversation, messages))
    }

    async fn message(&self, id: MessageId) -> Result<Message, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_message(&mut conn, id).await
    }

    async fn append_outbound(
        &self,
        id: ConversationId,
        out: OutboundMessage,
    ) -> Result<Message, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let conversation = load_conversation(&mut *tx, id).await?;
                let message_id = insert_outbound(&mut *tx, &conversation, &out, now).await?;
                let message = load_message(&mut *tx, message_id).await?;
                Ok(message)
            })
        })
        .await
    }

    async fn append_agent_reply(
        &self,
        id: ConversationId,
        agent: Option<AgentId>,
        reply: AgentReply,
    ) -> Result<Message, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let conversation = load_conversation(&mut *tx, id).await?;
                if conversation.status != ConversationStatus::Agent {
                    return Err(StoreError::Conflict(format!(
                        "the conversation is {}; an agent must accept its ticket before replying",
                        conversation.status
                    )));
                }
                let row = sqlx::query(
                    "SELECT * FROM handoffs WHERE conversation_id = $1 AND status = 'accepted' FOR UPDATE",
                )
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict("the conversation has no accepted ticket".into())
                })?;
                let handoff = row_handoff(&row)?;
                check_owner(&handoff, agent)?;
                let out = OutboundMessage {
                    attachments: reply.attachments,
                    template: reply.template,
                    channel: reply.channel,
                    ..OutboundMessage::text(
                        AuthorKind::Agent,
                        agent.or(handoff.assigned_agent_id),
                        reply.text,
                    )
                };
                let message_id = insert_outbound(&mut *tx, &conversation, &out, now).await?;
                if handoff.first_reply_at.is_none() {
                    sqlx::query("UPDATE handoffs SET first_reply_at = $1 WHERE id = $2")
                        .bind(now.as_millis())
                        .bind(handoff.id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    emit(
                        &mut *tx,
                        HandoffEventKind::FirstAgentReply,
                        &handoff,
                        conversation.channel,
                        now,
                    )
                    .await?;
                }
                let message = load_message(&mut *tx, message_id).await?;
                Ok(message)
            })
        })
        .await
    }

    async fn unprocessed_inbound(
        &self,
        limit: u32,
    ) -> Result<Vec<(MessageId, ConversationId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, conversation_id FROM messages WHERE needs_processing ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((parse_col(r, "id")?, parse_col(r, "conversation_id")?)))
            .collect()
    }

    async fn complete_inbound(
        &self,
        conversation: &Conversation,
        inbound: MessageId,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<Message>, StoreError> {
        let channel = conversation.channel;
        let conversation = conversation.id;
        let now = Timestamp::now();
        let replies: Vec<Message> = replies
            .into_iter()
            .map(|reply| Message {
                id: MessageId::new(),
                conversation_id: conversation,
                direction: crate::model::Direction::Out,
                author_kind: reply.author_kind,
                agent_id: reply.agent_id,
                delivery_status: initial_delivery_status(reply.author_kind, channel),
                delivery_error: None,
                text: reply.text.into_string(),
                html: reply.html,
                attachments: Vec::new(),
                external_id: None,
                created_at: now,
            })
            .collect();
        self.write(move |tx| {
            Box::pin(async move {
                // Only while the bot still owns the conversation: a person who took it over
                // while the bot was thinking gets no bot answer after theirs. The row lock
                // orders this against a handoff committing at the same moment (an exclusive
                // one: the trigger updates the row, and two shared locks would deadlock).
                let owned = sqlx::query("SELECT status FROM conversations WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(conversation.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get::<String, _>("status"))
                    .transpose()?
                    .is_some_and(|s| s == ConversationStatus::Bot.as_str());
                if owned {
                    for m in &replies {
                        // The trigger marks the inbound message handled with the first reply.
                        sqlx::query(
                            "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, agent_id,
                                                   text, html, delivery_status, next_attempt_at, in_reply_to, created_at)
                             SELECT $1, c.id, c.channel, 'out', $2, $3, $4, $5, $6, $7, $8, $7
                             FROM conversations c WHERE c.id = $9",
                        )
                        .bind(m.id.to_string())
                        .bind(m.author_kind.as_str())
                        .bind(m.agent_id.map(|a| a.to_string()))
                        .bind(&m.text)
                        .bind(m.html.as_deref())
                        .bind(m.delivery_status.as_str())
                        .bind(m.created_at.as_millis())
                        .bind(inbound.to_string())
                        .bind(conversation.to_string())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "UPDATE messages SET needs_processing = FALSE WHERE id = $1 AND needs_processing",
                )
                .bind(inbound.to_string())
                .execute(&mut *tx)
                .await?;
                Ok(if owned { replies } else { Vec::new() })
            })
        })
        .await
    }

    async fn mark_processed(&self, id: MessageId) -> Result<(), StoreError> {
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE messages SET needs_processing = FALSE WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Claimed, not only read: each due message is hidden from the other instances'
        // dispatchers for a lease (SKIP LOCKED passes over rows another one is claiming right
        // now), so one message is never sent twice at once. The outcome replaces the lease; a
        // dispatcher that died leaves it to run out, and the message is tried again.
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id, next_attempt_at AS was FROM messages
                 WHERE delivery_status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
                 ORDER BY next_attempt_at NULLS FIRST, created_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE messages m SET next_attempt_at = $3 FROM due WHERE m.id = due.id
             RETURNING m.*, due.was",
        )
        .bind(now.as_millis())
        .bind(limit as i64)
        .bind(now.as_millis() + DELIVERY_LEASE_MS)
        .fetch_all(&self.pool)
        .await?;
        let mut due = rows
            .iter()
            .map(|r| {
                let order = (
                    r.try_get::<Option<i64>, _>("was")?.unwrap_or(i64::MIN),
                    r.try_get::<i64, _>("created_at")?,
                );
                Ok((
                    order,
                    Delivery {
                        message: row_message(r)?,
                        channel: parse_col(r, "channel")?,
                        attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
                        template: r
                            .try_get::<Option<String>, _>("template")?
                            .map(|t| serde_json::from_str(&t))
                            .transpose()
                            .map_err(|e| StoreError::Corrupt(format!("message template: {e}")))?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING keeps no order: the one of the claim.
        due.sort_by_key(|(order, _)| *order);
        Ok(due.into_iter().map(|(_, d)| d).collect())
    }

    async fn record_deliveries(
        &self,
        outcomes: Vec<(MessageId, DeliveryOutcome)>,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = outcomes
            .into_iter()
            .map(|(id, outcome)| {
                let (status, next, error, external) = match outcome {
                    DeliveryOutcome::Sent(external) => (DeliveryStatus::Sent, None, None, external),
                    DeliveryOutcome::RetryAt(at, e) => (DeliveryStatus::Pending, Some(at.as_millis()), Some(e), None),
                    DeliveryOutcome::Failed(e) => (DeliveryStatus::Failed, None, Some(e), None),
                };
                serde_json::json!({"id": id, "status": status.as_str(), "next": next, "error": error, "external": external})
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        // One statement for the whole batch.
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE messages m SET delivery_status = o.status, next_attempt_at = o.next,
                                           delivery_error = o.error,
                                           external_id = coalesce(o.external, m.external_id),
                                           attempts = m.attempts + 1
                     FROM jsonb_to_recordset($1::jsonb)
                          AS o(id text, status text, next bigint, error text, external text)
                     WHERE m.id = o.id AND m.delivery_status = 'pending'",
                )
                .bind(rows)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn request_handoff(
        &self,
        id: ConversationId,
        request: HandoffRequest,
    ) -> Result<(Handoff, Option<Message>), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let conversation = load_conversation_locked(&mut *tx, id).await?;
                if conversation.status != ConversationStatus::Bot {
                    return Err(StoreError::Conflict(format!(
                        "the conversation is {}; only a conversation with the bot can be handed off",
                        conversation.status
                    )));
                }
                set_conversation_status(
                    &mut *tx,
                    id,
                    ConversationStatus::Bot,
                    ConversationStatus::Queued,
                    now,
                )
                .await?;
                let handoff_id = HandoffId::new();
                sqlx::query(
                    "INSERT INTO handoffs (id, conversation_id, reason, reason_detail, summary, priority, priority_rank,
                                           required_skills, status, requested_at, team, rule, intent, fields, language)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11, $12, $13, $14)",
                )
                .bind(handoff_id.to_string())
                .bind(id.to_string())
                .bind(request.reason.as_str())
                .bind(request.reason_detail.as_deref())
                .bind(request.summary.as_deref())
                .bind(request.priority.as_str())
                .bind(request.priority.rank())
                .bind(skills_json(&request.required_skills))
                .bind(now.as_millis())
                .bind(request.team.as_ref().map(|t| t.as_str().to_owned()))
                .bind(request.rule.as_deref())
                .bind(request.intent.as_deref())
                .bind(serde_json::Value::Object(request.fields.clone()).to_string())
                .bind(request.language.as_deref())
                .execute(&mut *tx)
                .await?;
                // Sticky routing: who last helped this customer, on any channel.
                let last = routing::last_agent_of(&mut *tx, conversation.customer_id).await?;
                routing::set_sticky(&mut *tx, handoff_id, last).await?;
                let handoff = load_handoff(&mut *tx, handoff_id).await?;
                let notice = match request.notice {
                    Some(text) => {
                        let notice = OutboundMessage::text(AuthorKind::System, None, text);
                        let id = insert_outbound(&mut *tx, &conversation, &notice, now).await?;
                        Some(load_message(&mut *tx, id).await?)
                    }
                    None => None,
                };
                // Events last (see `emit_event`).
                emit(
                    &mut *tx,
                    HandoffEventKind::Requested,
                    &handoff,
                    conversation.channel,
                    now,
                )
                .await?;
                emit(
                    &mut *tx,
                    HandoffEventKind::Queued,
                    &handoff,
                    conversation.channel,
                    now,
                )
                .await?;
                Ok((handoff, notice))
            })
        })
        .await
    }

    async fn ticket_step(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                // Locks in the order every routing write takes them: the routing version,
                // the ticket, its conversation, the outbox.
                bump_routing(&mut *tx).await?;
                let handoff = load_handoff_locked(&mut *tx, id).await?;
                if !step.applies_to(handoff.status) {
                    return Err(StoreError::Conflict(format!(
                        "the ticket is {}; it cannot be {}",
                        handoff.status,
                        step.done()
                    )));
                }
                check_owner(&handoff, agent)?;
                let conversation = load_conversation(&mut *tx, handoff.conversation_id).await?;
                set_conversation_status(
                    &mut *tx,
                    conversation.id,
                    conversation.status,
                    step.conversation_status(),
                    now,
                )
                .await?;
                if step == TicketStep::Release {
                    sqlx::query("UPDATE conversations SET assigned_agent_id = NULL WHERE id = $1")
                        .bind(conversation.id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "UPDATE handoffs SET status = $1,
                         accepted_at = CASE WHEN $1 = 'accepted' THEN $2 ELSE accepted_at END,
                         closed_at = CASE WHEN $1 IN ('resolved', 'released') THEN $2 ELSE closed_at END
                     WHERE id = $3",
                )
                .bind(step.handoff_status().as_str())
                .bind(now.as_millis())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                let handoff = load_handoff(&mut *tx, id).await?;
                emit(&mut *tx, step.event(), &handoff, conversation.channel, now).await?;
                Ok(handoff)
            })
        })
        .await
    }

    async fn handoff(&self, id: HandoffId) -> Result<Handoff, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_handoff(&mut conn, id).await
    }

    async fn latest_handoff(&self, id: ConversationId) -> Result<Option<Handoff>, StoreError> {
        let row = sqlx::query("SELECT * FROM handoffs WHERE conversation_id = $1 ORDER BY requested_at DESC, id DESC LIMIT 1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_handoff).transpose()
    }

    async fn list_handoffs(
        &self,
        status: Option<HandoffStatus>,
        limit: u32,
    ) -> Result<Vec<Handoff>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM handoffs WHERE ($1 IS NULL OR status = $1)
             ORDER BY priority_rank DESC, requested_at, id LIMIT $2",
        )
        .bind(status.map(HandoffStatus::as_str))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_handoff).collect()
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.write(move |tx| Box::pin(accounts::create_user(tx, user)))
            .await
    }

    async fn user(&self, id: UserId) -> Result<User, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::load_user(&mut conn, id).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::list_users(&mut conn).await
    }

    async fn login_candidate(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<LoginCandidate>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::login_candidate(&mut conn, email).await
    }

    async fn set_password(&self, id: UserId, password_hash: String) -> Result<(), StoreError> {
        self.write(move |tx| Box::pin(accounts::set_password(tx, id, password_hash)))
            .await
    }

    async fn update_user(&self, id: UserId, update: UserUpdate) -> Result<User, StoreError> {
        self.write(move |tx| Box::pin(accounts::update_user(tx, id, update)))
            .await
    }

    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.write(move |tx| Box::pin(accounts::create_session(tx, session)))
            .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::session(&mut conn, id_hash).await
    }

    async fn touch_session(&self, id_hash: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move { accounts::touch_session(tx, &id_hash, expires_at).await })
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move { accounts::delete_session(tx, &id_hash).await })
        })
        .await
    }

    async fn insert_user_token(
        &self,
        token_hash: &str,
        user: UserId,
        label: &str,
    ) -> Result<TokenInfo, StoreError> {
        let (token_hash, label) = (token_hash.to_owned(), label.to_owned());
        self.write(move |tx| {
            Box::pin(
                async move { accounts::insert_user_token(tx, &token_hash, user, &label).await },
            )
        })
        .await
    }

    async fn user_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::user_tokens(&mut conn, user).await
    }

    async fn revoke_token(&self, user: UserId, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move { accounts::revoke_token(tx, user, &id).await })
        })
        .await
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write_one(move |tx| Box::pin(accounts::record_audit(tx, entry)))
            .await
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::audit_log(&mut conn, query).await
    }

    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let id = AgentId::new();
                let now = Timestamp::now();
                let result = sqlx::query(
                    "INSERT INTO agents (id, name, email, skills, teams, max_concurrent, presence, created_at,
                                         capacity, hours)
                     VALUES ($1, $2, $3, $4, $5, $6, 'offline', $7, $8, $9)",
                )
                .bind(id.to_string())
                .bind(&agent.name)
                .bind(agent.email.as_str())
                .bind(skills_json(&agent.skills))
                .bind(
                    serde_json::to_string(&agent.teams.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                        .unwrap_or_else(|_| "[]".into()),
                )
                .bind(agent.max_concurrent as i64)
                .bind(now.as_millis())
                .bind(serde_json::to_string(&agent.capacity).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                .bind(
                    agent
                        .hours
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                )
                .execute(&mut *tx)
                .await;
                match result {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        return Err(StoreError::Conflict(
                            "an agent with this email already exists".into(),
                        ));
                    }
                    other => {
                        other?;
                    }
                }
                accounts::insert_agent_user(&mut *tx, id.into(), &agent.email, &agent.name, now)
                    .await?;
                load_agent(&mut *tx, id).await
            })
        })
        .await
    }

    async fn agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_agent(&mut conn, id).await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY name, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_agent).collect()
    }

    async fn set_presence(&self, id: AgentId, presence: Presence) -> Result<Agent, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                // The routing version before the agent, as every routing write takes them.
                bump_routing(&mut *tx).await?;
                let done = sqlx::query("UPDATE agents SET presence = $1 WHERE id = $2")
                    .bind(presence.as_str())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("agent"));
                }
                load_agent(&mut *tx, id).await
            })
        })
        .await
    }

    async fn insert_token(
        &self,
        token_hash: &str,
        role: Role,
        label: &str,
    ) -> Result<(), StoreError> {
        let (token_hash, label) = (token_hash.to_owned(), label.to_owned());
        self.write_one(move |tx| {
            Box::pin(async move {
                let (role_name, agent) = match role {
                    Role::Admin => ("admin", None),
                    // Managers get tokens of their user (`insert_user_token`).
                    Role::Manager(_) => {
                        return Err(StoreError::Conflict("a manager's token belongs to their user".into()));
                    }
                    Role::Agent(a) => ("agent", Some(a.to_string())),
                    Role::Ingest => ("ingest", None),
                };
                // An agent's token belongs to the agent's user (same id), so disabling the user
                // stops it.
                sqlx::query(
                    "INSERT INTO api_tokens (id, token_hash, role, agent_id, label, created_at, user_id)
                     VALUES ($1, $2, $3, $4, $5, $6, (SELECT id FROM users WHERE id = $4))
                     ON CONFLICT(token_hash) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(token_hash)
                .bind(role_name)
                .bind(agent)
                .bind(label)
                .bind(Timestamp::now().as_millis())
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn role_for_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        accounts::role_for_token(&mut conn, token_hash).await
    }

    async fn outbox_batch(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        // One instance ships, in order, from its own cursor; the others find nothing to ship
        // until it stops (their shippers keep asking, and one of them takes over).
        if !self.is_shipper().await? {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT seq, payload FROM event_outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(OutboxEntry {
                    seq: r.try_get("seq")?,
                    event: decode_outbox_payload(&payload),
                })
            })
            .collect()
    }

    async fn outbox_ack(&self, seqs: Vec<i64>) -> Result<(), StoreError> {
        // By position, never by range: see the trait. Pieces keep each statement's array and
        // row locks small.
        for piece in seqs.chunks(ACK_PIECE) {
            sqlx::query("DELETE FROM event_outbox WHERE seq = ANY($1)")
                .bind(piece)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn outbox_dead_letter(&self, letters: Vec<(i64, String)>) -> Result<(), StoreError> {
        if letters.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().as_millis();
        self.write(move |tx| {
            Box::pin(async move {
                for (seq, error) in letters {
                    sqlx::query(
                        "WITH gone AS (DELETE FROM event_outbox WHERE seq = $3
                                       RETURNING seq, event_id, payload, created_at)
                         INSERT INTO event_dead_letters
                             (seq, event_id, payload, error, created_at, failed_at)
                         SELECT seq, event_id, payload, $1, created_at, $2 FROM gone
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(truncate_error(&error))
                    .bind(now)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, payload, error, created_at, failed_at
             FROM event_dead_letters ORDER BY seq LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dead_letter).collect()
    }

    async fn dead_letters_requeue(&self) -> Result<u64, StoreError> {
        self.write(|tx| {
            Box::pin(async move {
                // As every outbox writer: positions become visible in the order handed out.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(LOCK_OUTBOX)
                    .execute(&mut *tx)
                    .await?;
                let moved = sqlx::query(
                    "WITH gone AS (DELETE FROM event_dead_letters
                                   RETURNING seq, event_id, payload, created_at)
                     INSERT INTO event_outbox (event_id, payload, created_at)
                     SELECT event_id, payload, created_at FROM gone ORDER BY seq",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                Ok(moved)
            })
        })
        .await
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM event_dead_letters")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM event_outbox")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    async fn conversation_activity(
        &self,
        from: Timestamp,
        to: Timestamp,
        channel: Option<ChannelKind>,
    ) -> Result<ConversationActivity, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS active, count(*) FILTER (WHERE handed_off) AS handed_off FROM (
                 SELECT m.conversation_id,
                        EXISTS (SELECT 1 FROM handoffs h
                                WHERE h.conversation_id = m.conversation_id
                                  AND h.requested_at >= $1 AND h.requested_at < $2) AS handed_off
                 FROM messages m
                 WHERE m.direction = 'in' AND m.created_at >= $1 AND m.created_at < $2
                   AND ($3::text IS NULL OR m.channel = $3)
                 GROUP BY m.conversation_id
             ) AS active",
        )
        .bind(from.as_millis())
        .bind(to.as_millis())
        .bind(channel.map(ChannelKind::as_str))
        .fetch_one(&self.pool)
        .await?;
        let active: i64 = row.try_get("active")?;
        let handed_off: i64 = row.try_get("handed_off")?;
        Ok(ConversationActivity {
            active: active.max(0) as u64,
            handed_off: handed_off.max(0) as u64,
        })
    }

    async fn channel_recipient(
        &self,
        conversation: ConversationId,
    ) -> Result<ChannelRecipient, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT value FROM identities
                     WHERE customer_id = c.customer_id AND kind = c.channel
                     ORDER BY created_at DESC LIMIT 1) AS external_id,
                    (SELECT max(created_at) FROM messages
                     WHERE conversation_id = c.id AND direction = 'in') AS last_inbound_at
             FROM conversations c WHERE c.id = $1",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        let external_id: Option<String> = row.try_get("external_id")?;
        Ok(ChannelRecipient {
            external_id: external_id.ok_or_else(|| {
                StoreError::Conflict("the customer has no id on this channel".into())
            })?,
            last_inbound_at: opt_ts(&row, "last_inbound_at")?,
        })
    }

    async fn apply_receipt(
        &self,
        channel: ChannelKind,
        external_id: &str,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let external_id = external_id.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move {
                // Receipts arrive out of order (read before delivered): never move backwards.
                let new_rank = match status {
                    DeliveryStatus::Sent => 1,
                    DeliveryStatus::Delivered => 2,
                    DeliveryStatus::Read => 3,
                    _ => 4,
                };
                let done = sqlx::query(
                    "UPDATE messages SET delivery_status = $1, delivery_error = coalesce($2, delivery_error)
                     WHERE channel = $3 AND external_id = $4 AND direction = 'out'
                       AND CASE delivery_status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1
                           WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 4 END < $5",
                )
                .bind(status.as_str())
                .bind(error)
                .bind(channel.as_str())
                .bind(&external_id)
                .bind(new_rank)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                Ok(done > 0)
            })
        })
        .await
    }

    async fn edit_inbound(
        &self,
        channel: ChannelKind,
        external_id: &str,
        sender: &Identity,
        text: MessageText,
    ) -> Result<bool, StoreError> {
        let (external_id, sender) = (external_id.to_owned(), sender.clone());
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
                let row = sqlx::query(
                    "SELECT m.id, m.text FROM messages m
                     JOIN conversations c ON c.id = m.conversation_id
                     JOIN identities i ON i.customer_id = c.customer_id AND i.kind = $3 AND i.value = $4
                     WHERE m.channel = $1 AND m.external_id = $2 AND m.direction = 'in'",
                )
                .bind(channel.as_str())
                .bind(&external_id)
                .bind(sender.kind.as_str())
                .bind(&sender.value)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { return Ok(false) };
                let id: String = row.try_get("id")?;
                let old: String = row.try_get("text")?;
                if old == text.as_str() {
                    return Ok(false);
                }
                sqlx::query("INSERT INTO message_edits (message_id, old_text, edited_at) VALUES ($1, $2, $3)")
                    .bind(&id)
                    .bind(&old)
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE messages SET text = $1 WHERE id = $2")
                    .bind(text.as_str())
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn ingest_email(&self, email: InboundEmail) -> Result<EmailReceipt, StoreError> {
        let email = std::sync::Arc::new(email);
        let mut retried = false;
        loop {
            let (e, token) = (
                email.clone(),
                crate::channels::email::thread::new_reply_token(),
            );
            let result = self
                .write(move |tx| {
                    Box::pin(async move {
                        lock_sender(&mut *tx, &e.message.sender.identity).await?;
                        email::ingest(tx, &e, &token, Timestamp::now()).await
                    })
                })
                .await;
            match result {
                // A copy of the mail stored meanwhile by another sender's transaction (or a
                // reply token drawn twice): once more threads it as the single writer would.
                Err(e) if !retried && is_unique_violation(&e) => retried = true,
                other => return other,
            }
        }
    }

    async fn email_thread(&self, conversation: ConversationId) -> Result<EmailThread, StoreError> {
        let token = crate::channels::email::thread::new_reply_token();
        self.write(move |tx| Box::pin(async move { email::thread(tx, conversation, &token).await }))
            .await
    }

    async fn remember_sent_email(
        &self,
        message: MessageId,
        conversation: ConversationId,
        message_id_header: &str,
    ) -> Result<(), StoreError> {
        let header = message_id_header.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move {
                email::remember_sent(tx, message, conversation, &header, Timestamp::now()).await
            })
        })
        .await
    }

    async fn file(&self, id: &str) -> Result<StoredFile, StoreError> {
        let row = sqlx::query(
            "SELECT b.name, b.content_type, b.content_id, b.inline, b.data, m.conversation_id
             FROM attachment_blobs b JOIN messages m ON m.id = b.message_row WHERE b.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("attachment"))?;
        Ok(StoredFile {
            conversation_id: parse_col(&row, "conversation_id")?,
            file: FileData {
                name: row.try_get("name")?,
                content_type: row.try_get("content_type")?,
                content_id: row.try_get("content_id")?,
                inline: row.try_get("inline")?,
                data: row.try_get("data")?,
            },
        })
    }

    async fn imap_position(&self, mailbox: &str, uid_validity: u32) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT last_uid FROM imap_positions WHERE mailbox = $1 AND uid_validity = $2",
        )
        .bind(mailbox)
        .bind(uid_validity as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("last_uid")?.clamp(0, u32::MAX as i64) as u32,
            None => 0,
        })
    }

    async fn set_imap_position(
        &self,
        mailbox: &str,
        uid_validity: u32,
        last_uid: u32,
    ) -> Result<(), StoreError> {
        let mailbox = mailbox.to_owned();
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO imap_positions (mailbox, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (mailbox, uid_validity)
                     DO UPDATE SET last_uid = greatest(imap_positions.last_uid, excluded.last_uid), updated_at = excluded.updated_at",
                )
                .bind(&mailbox)
                .bind(uid_validity as i64)
                .bind(last_uid as i64)
                .bind(Timestamp::now().as_millis())
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_customer_tags(
        &self,
        id: CustomerId,
        tags: Vec<String>,
    ) -> Result<Customer, StoreError> {
        let json = serde_json::to_string(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = self
            .write_one(move |tx| {
                Box::pin(async move {
                    Ok(sqlx::query("UPDATE customers SET tags = $1 WHERE id = $2")
                        .bind(json)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })
            })
            .await?;
        if done == 0 {
            return Err(StoreError::NotFound("customer"));
        }
        self.customer(id).await
    }

    async fn set_bot_fallbacks(&self, id: ConversationId, n: u32) -> Result<(), StoreError> {
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE conversations SET bot_fallbacks = $1 WHERE id = $2")
                    .bind(n as i64)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn bot_session(&self, id: ConversationId) -> Result<BotSession, StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::bot_session(&mut conn, id).await
    }

    async fn escalation_rules(&self) -> Result<Option<Vec<serde_json::Value>>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::escalation_rules(&mut conn).await
    }

    async fn set_escalation_rules(
        &self,
        rules: Vec<(String, serde_json::Value)>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move { routing::set_escalation_rules(tx, &rules).await })
        })
        .await
    }

    async fn routing_version(&self) -> Result<Option<i64>, StoreError> {
        let version: i64 = sqlx::query("SELECT version FROM routing_version")
            .fetch_one(&self.pool)
            .await?
            .try_get("version")?;
        Ok(Some(version))
    }

    async fn routing_state(&self) -> Result<(Vec<AgentRouting>, Vec<OpenTicket>), StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::routing_state(&mut conn).await
    }

    async fn apply_routing(&self, batch: RoutingBatch) -> Result<Vec<Message>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            Box::pin(async move { routing::apply_routing(tx, batch, Timestamp::now()).await })
        })
        .await
    }

    async fn last_agent_of(
        &self,
        customer: CustomerId,
    ) -> Result<Option<(AgentId, Timestamp)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::last_agent_of(&mut conn, customer).await
    }

    async fn queue_settings(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query("SELECT team, settings FROM queues ORDER BY team")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let raw: String = r.try_get("settings")?;
                Ok((
                    r.try_get("team")?,
                    serde_json::from_str(&raw)
                        .map_err(|e| StoreError::Corrupt(format!("queue settings: {e}")))?,
                ))
            })
            .collect()
    }

    async fn set_queue_settings(
        &self,
        team: String,
        settings: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO queues (team, settings, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (team) DO UPDATE SET settings = $2, updated_at = $3",
                )
                .bind(team)
                .bind(settings.to_string())
                .bind(Timestamp::now().as_millis())
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn recent_acceptances(
        &self,
        team: &str,
        since: Timestamp,
    ) -> Result<(u32, Option<i64>), StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::recent_acceptances(&mut conn, team, since).await
    }

    async fn silent_queued(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<HandoffId>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        routing::silent_queued(&mut conn, cutoff, limit).await
    }

    async fn abandon(&self, id: HandoffId) -> Result<Handoff, StoreError> {
        self.write(move |tx| {
            Box::pin(async move { routing::abandon(tx, id, Timestamp::now()).await })
        })
        .await
    }

    async fn add_handoff_note(&self, id: HandoffId, note: HandoffNote) -> Result<(), StoreError> {
        self.write_one(move |tx| Box::pin(async move { routing::add_note(tx, id, &note).await }))
            .await
    }

    async fn set_handback_note(
        &self,
        id: ConversationId,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        self.write_one(move |tx| {
            Box::pin(
                async move { routing::set_handback_note(tx, id, note, Timestamp::now()).await },
            )
        })
        .await
    }

    async fn update_agent(&self, id: AgentId, update: AgentUpdate) -> Result<Agent, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                bump_routing(&mut *tx).await?;
                routing::update_agent(&mut *tx, id, update).await
            })
        })
        .await
    }

    async fn told(
        &self,
        ids: Vec<HandoffId>,
    ) -> Result<
        std::collections::HashMap<HandoffId, (Option<u32>, Option<i64>, Option<Timestamp>)>,
        StoreError,
    > {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows = sqlx::query(
            "SELECT id, told_position, told_wait_ms, told_at FROM handoffs WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_col(r, "id")?,
                    (
                        r.try_get::<Option<i64>, _>("told_position")?
                            .map(|p| p.clamp(0, u32::MAX as i64) as u32),
                        r.try_get("told_wait_ms")?,
                        opt_ts(r, "told_at")?,
                    ),
                ))
            })
            .collect()
    }

    async fn handoff_context(&self, id: HandoffId) -> Result<HandoffContext, StoreError> {
        let handoff = self.handoff(id).await?;
        let conversation = self.conversation(handoff.conversation_id).await?;
        let customer = self.customer(conversation.customer_id).await?;
        let mut conn = self.pool.acquire().await?;
        routing::handoff_context(&mut conn, customer, handoff).await
    }

    async fn close(&self) {
        PgStore::close(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_cannot_serve_is_unavailable_and_a_bad_statement_is_not() {
        // disk full, too many connections, connection failure, shutdown, I/O error, deadlock,
        // read-only server
        for code in [
            "53100", "53300", "08006", "57P01", "58030", "40P01", "25006",
        ] {
            assert!(unavailable(code), "{code}");
        }
        // unique violation, syntax error, undefined table, not-null violation
        for code in ["23505", "42601", "42P01", "23502"] {
            assert!(!unavailable(code), "{code}");
        }
    }

    #[test]
    fn only_postgres_urls_name_a_postgres_store() {
        assert!(is_postgres_url("postgres://u:p@h/db"));
        assert!(is_postgres_url(" PostgreSQL://h/db"));
        assert!(!is_postgres_url("sqlite://data/baton.sqlite3"));
        assert!(!is_postgres_url("./data"));
    }
}
