//! The SQLite store: the embedded default, one file under the data directory.
//!
//! Writes go through a single connection (SQLite has one writer at a time anyway; queueing in
//! the pool beats spinning on `SQLITE_BUSY`), reads through a small pool of their own (WAL lets
//! readers run beside the writer). Inbound messages are group-committed: the ingest writer takes
//! every message waiting, stores them in one transaction and acknowledges each after the single
//! fsync, which is what makes durable acknowledgements cheap.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::model::{CustomerId, HandoffEventKind, IdentityKind, ParseError};

/// How many inbound messages one group commit takes at most.
const MAX_GROUP_COMMIT: usize = 256;

type IngestJob = (
    InboundMessage,
    oneshot::Sender<Result<IngestReceipt, StoreError>>,
);

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    ingest_tx: mpsc::Sender<IngestJob>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, applies migrations and starts the
    /// group-commit writer. Must be called inside a Tokio runtime.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed transaction survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let (ingest_tx, ingest_rx) = mpsc::channel(4 * MAX_GROUP_COMMIT);
        tokio::spawn(ingest_writer(write.clone(), ingest_rx));
        Ok(Self {
            read,
            write,
            ingest_tx,
        })
    }

    /// Applies migrations to a database file and closes it (`baton migrate`).
    pub async fn migrate(path: &Path) -> Result<(), StoreError> {
        let store = Self::open(path).await?;
        store.write.close().await;
        store.read.close().await;
        Ok(())
    }

    /// Closes both pools, waiting for in-flight work.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                // SQLite's primary result code is the low byte of the extended code.
                let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
                match code {
                    // BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN
                    5 | 6 | 8 | 10 | 11 | 13 | 14 => StoreError::Unavailable(e),
                    _ => StoreError::Database(e),
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

fn corrupt(e: ParseError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse_col<T: FromStr<Err = ParseError>>(row: &SqliteRow, col: &str) -> Result<T, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(corrupt)
}

fn parse_opt_col<T: FromStr<Err = ParseError>>(
    row: &SqliteRow,
    col: &str,
) -> Result<Option<T>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| s.parse().map_err(corrupt)).transpose()
}

fn ts(row: &SqliteRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(row.try_get(col)?))
}

fn opt_ts(row: &SqliteRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row
        .try_get::<Option<i64>, _>(col)?
        .map(Timestamp::from_millis))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T, StoreError> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn skills_json(skills: &[Skill]) -> String {
    serde_json::to_string(&skills.iter().map(Skill::as_str).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

fn parse_skills(row: &SqliteRow, col: &str) -> Result<Vec<Skill>, StoreError> {
    let raw: Vec<String> = json_col(row, col)?;
    raw.iter()
        .map(|s| Skill::parse(s).map_err(corrupt))
        .collect()
}

fn row_conversation(row: &SqliteRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: parse_col(row, "id")?,
        channel: parse_col(row, "channel")?,
        status: parse_col(row, "status")?,
        customer_id: parse_col(row, "customer_id")?,
        assigned_agent_id: parse_opt_col(row, "assigned_agent_id")?,
        subject: row.try_get("subject")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn row_message(row: &SqliteRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: parse_col(row, "id")?,
        conversation_id: parse_col(row, "conversation_id")?,
        direction: parse_col(row, "direction")?,
        author_kind: parse_col(row, "author_kind")?,
        agent_id: parse_opt_col(row, "agent_id")?,
        text: row.try_get("text")?,
        html: row.try_get("html")?,
        attachments: json_col(row, "attachments")?,
        external_id: row.try_get("external_id")?,
        delivery_status: parse_col(row, "delivery_status")?,
        created_at: ts(row, "created_at")?,
    })
}

fn row_handoff(row: &SqliteRow) -> Result<Handoff, StoreError> {
    Ok(Handoff {
        id: parse_col(row, "id")?,
        conversation_id: parse_col(row, "conversation_id")?,
        reason: parse_col(row, "reason")?,
        reason_detail: row.try_get("reason_detail")?,
        summary: row.try_get("summary")?,
        priority: parse_col(row, "priority")?,
        required_skills: parse_skills(row, "required_skills")?
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        status: parse_col(row, "status")?,
        assigned_agent_id: parse_opt_col(row, "assigned_agent_id")?,
        requested_at: ts(row, "requested_at")?,
        assigned_at: opt_ts(row, "assigned_at")?,
        accepted_at: opt_ts(row, "accepted_at")?,
        first_reply_at: opt_ts(row, "first_reply_at")?,
        closed_at: opt_ts(row, "closed_at")?,
    })
}

fn row_agent(row: &SqliteRow) -> Result<Agent, StoreError> {
    let email: String = row.try_get("email")?;
    Ok(Agent {
        id: parse_col(row, "id")?,
        name: row.try_get("name")?,
        email: EmailAddress::parse(&email).map_err(corrupt)?,
        skills: parse_skills(row, "skills")?,
        max_concurrent: row
            .try_get::<i64, _>("max_concurrent")?
            .clamp(0, u32::MAX as i64) as u32,
        presence: parse_col(row, "presence")?,
        created_at: ts(row, "created_at")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Inbound: the group-commit writer.

async fn ingest_writer(pool: SqlitePool, mut rx: mpsc::Receiver<IngestJob>) {
    let mut jobs: Vec<IngestJob> = Vec::with_capacity(MAX_GROUP_COMMIT);
    while rx.recv_many(&mut jobs, MAX_GROUP_COMMIT).await > 0 {
        let batch = std::mem::take(&mut jobs);
        let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match ingest_batch(&pool, &messages).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(batch_error) if messages.len() > 1 => {
                // One bad message must not fail its neighbours: retry each on its own.
                tracing::warn!(error = %batch_error, size = messages.len(), "group commit failed; retrying one by one");
                for (message, reply) in messages.into_iter().zip(replies) {
                    let result = match ingest_batch(&pool, std::slice::from_ref(&message)).await {
                        Ok(mut r) => r
                            .pop()
                            .unwrap_or(Err(StoreError::Conflict("empty batch".into()))),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// Stores a batch in one transaction. The outer error means nothing was committed; the inner
/// results are per message (a message that fails validation touches nothing).
async fn ingest_batch(
    pool: &SqlitePool,
    messages: &[InboundMessage],
) -> Result<Vec<Result<IngestReceipt, StoreError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let now = Timestamp::now();
    let mut results = Vec::with_capacity(messages.len());
    for m in messages {
        match ingest_one(&mut tx, m, now).await {
            Ok(r) => results.push(Ok(r)),
            Err(e @ (StoreError::NotFound(_) | StoreError::Conflict(_))) => results.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn ingest_one(
    conn: &mut SqliteConnection,
    m: &InboundMessage,
    now: Timestamp,
) -> Result<IngestReceipt, StoreError> {
    let channel = m.channel.as_str();
    if let Some(external_id) = &m.external_id {
        let existing = sqlx::query(
            "SELECT id, conversation_id FROM messages WHERE channel = ? AND external_id = ? AND direction = 'in'",
        )
        .bind(channel)
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            return Ok(IngestReceipt {
                conversation_id: parse_col(&row, "conversation_id")?,
                message_id: parse_col(&row, "id")?,
                duplicate: true,
            });
        }
    }

    let conversation_id = match m.conversation_id {
        Some(id) => {
            let row = sqlx::query("SELECT channel, status FROM conversations WHERE id = ?")
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
        None => {
            let customer = resolve_customer(conn, &m.sender, now).await?;
            let open = sqlx::query(
                "SELECT id FROM conversations WHERE customer_id = ? AND channel = ? AND status != 'resolved'
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(customer.to_string())
            .bind(channel)
            .fetch_optional(&mut *conn)
            .await?;
            match open {
                Some(row) => parse_col(&row, "id")?,
                None => insert_conversation(conn, m.channel, customer, None, now).await?,
            }
        }
    };

    let message_id = MessageId::new();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, text, html, attachments,
                               external_id, delivery_status, needs_processing, created_at)
         VALUES (?, ?, ?, 'in', 'customer', ?, ?, ?, ?, 'received', 1, ?)",
    )
    .bind(message_id.to_string())
    .bind(conversation_id.to_string())
    .bind(channel)
    .bind(m.text.as_str())
    .bind(m.html.as_deref())
    .bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
    .bind(m.external_id.as_deref())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
        .bind(now.as_millis())
        .bind(conversation_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(IngestReceipt {
        conversation_id,
        message_id,
        duplicate: false,
    })
}

/// Finds the customer behind a sender, or creates one. A known email address or phone
/// number links a new channel identity to the existing customer.
async fn resolve_customer(
    conn: &mut SqliteConnection,
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
            sqlx::query("INSERT INTO customers (id, display_name, created_at) VALUES (?, ?, ?)")
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
        sqlx::query("INSERT OR IGNORE INTO identities (kind, value, customer_id, created_at) VALUES (?, ?, ?, ?)")
            .bind(identity.kind.as_str())
            .bind(&identity.value)
            .bind(customer.to_string())
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
    }
    if let Some(name) = &sender.display_name {
        sqlx::query("UPDATE customers SET display_name = ? WHERE id = ? AND display_name IS NULL")
            .bind(name)
            .bind(customer.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(customer)
}

async fn find_identity(
    conn: &mut SqliteConnection,
    identity: &Identity,
) -> Result<Option<CustomerId>, StoreError> {
    let row = sqlx::query("SELECT customer_id FROM identities WHERE kind = ? AND value = ?")
        .bind(identity.kind.as_str())
        .bind(&identity.value)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse_col(&r, "customer_id")).transpose()
}

async fn insert_conversation(
    conn: &mut SqliteConnection,
    channel: ChannelKind,
    customer: CustomerId,
    widget_token_hash: Option<&str>,
    now: Timestamp,
) -> Result<ConversationId, StoreError> {
    let id = ConversationId::new();
    sqlx::query(
        "INSERT INTO conversations (id, channel, status, customer_id, widget_token_hash, created_at, updated_at)
         VALUES (?, ?, 'bot', ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    id: ConversationId,
    from: ConversationStatus,
    to: ConversationStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    from.transition(to)?;
    let done = sqlx::query(
        "UPDATE conversations SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
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

async fn load_conversation(
    conn: &mut SqliteConnection,
    id: ConversationId,
) -> Result<Conversation, StoreError> {
    let row = sqlx::query(
        "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at
         FROM conversations WHERE id = ?",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("conversation"))?;
    row_conversation(&row)
}

async fn load_handoff(conn: &mut SqliteConnection, id: HandoffId) -> Result<Handoff, StoreError> {
    let row = sqlx::query("SELECT * FROM handoffs WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("handoff"))?;
    row_handoff(&row)
}

async fn load_message(conn: &mut SqliteConnection, id: MessageId) -> Result<Message, StoreError> {
    let row = sqlx::query("SELECT * FROM messages WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("message"))?;
    row_message(&row)
}

async fn insert_outbound(
    conn: &mut SqliteConnection,
    conversation: &Conversation,
    out: &OutboundMessage,
    now: Timestamp,
) -> Result<MessageId, StoreError> {
    let id = MessageId::new();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, agent_id, text, html,
                               delivery_status, next_attempt_at, created_at)
         VALUES (?, ?, ?, 'out', ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(conversation.id.to_string())
    .bind(conversation.channel.as_str())
    .bind(out.author_kind.as_str())
    .bind(out.agent_id.map(|a| a.to_string()))
    .bind(out.text.as_str())
    .bind(out.html.as_deref())
    .bind(initial_delivery_status(out.author_kind).as_str())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
        .bind(now.as_millis())
        .bind(conversation.id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// Appends a handoff event to the outbox, in the caller's transaction.
async fn emit(
    conn: &mut SqliteConnection,
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
    );
    let payload = serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("INSERT INTO event_outbox (event_id, payload, created_at) VALUES (?, ?, ?)")
        .bind(event.event_id.to_string())
        .bind(payload)
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Checks that `agent` (when given) owns the ticket.
fn check_owner(handoff: &Handoff, agent: Option<AgentId>) -> Result<(), StoreError> {
    match agent {
        Some(a) if handoff.assigned_agent_id != Some(a) => Err(StoreError::NotYours),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, inbound: InboundMessage) -> Result<IngestReceipt, StoreError> {
        let (reply, receipt) = oneshot::channel();
        self.ingest_tx
            .send((inbound, reply))
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        receipt
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))?
    }

    async fn create_web_conversation(
        &self,
        sender: SenderProfile,
        token_hash: String,
    ) -> Result<Conversation, StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let customer = resolve_customer(&mut tx, &sender, now).await?;
        let id = insert_conversation(
            &mut tx,
            ChannelKind::WebChat,
            customer,
            Some(&token_hash),
            now,
        )
        .await?;
        let conversation = load_conversation(&mut tx, id).await?;
        tx.commit().await?;
        Ok(conversation)
    }

    async fn widget_token_hash(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT widget_token_hash FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row
            .map(|r| r.try_get("widget_token_hash"))
            .transpose()?
            .flatten())
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer, StoreError> {
        let mut conn = self.read.acquire().await?;
        let row = sqlx::query("SELECT id, display_name, created_at FROM customers WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound("customer"))?;
        let identities = sqlx::query(
            "SELECT kind, value FROM identities WHERE customer_id = ? ORDER BY created_at, kind",
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
            created_at: ts(&row, "created_at")?,
        })
    }

    async fn conversation(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        let mut conn = self.read.acquire().await?;
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
            "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at
             FROM conversations
             WHERE (?1 IS NULL OR channel = ?1)
               AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR (created_at, id) < (?3, ?4))
             ORDER BY created_at DESC, id DESC
             LIMIT ?5",
        )
        .bind(filter.channel.map(ChannelKind::as_str))
        .bind(filter.status.map(ConversationStatus::as_str))
        .bind(before_ts)
        .bind(before_id)
        .bind(filter.limit as i64)
        .fetch_all(&self.read)
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
             WHERE conversation_id = ?1
               AND (?2 IS NULL OR (created_at, id) > (SELECT created_at, id FROM messages WHERE id = ?2))
             ORDER BY created_at, id
             LIMIT ?3",
        )
        .bind(id.to_string())
        .bind(after.map(|a| a.to_string()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(row_message).collect()
    }

    async fn message(&self, id: MessageId) -> Result<Message, StoreError> {
        let mut conn = self.read.acquire().await?;
        load_message(&mut conn, id).await
    }

    async fn append_outbound(
        &self,
        id: ConversationId,
        out: OutboundMessage,
    ) -> Result<Message, StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let conversation = load_conversation(&mut tx, id).await?;
        let message_id = insert_outbound(&mut tx, &conversation, &out, now).await?;
        let message = load_message(&mut tx, message_id).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn append_agent_reply(
        &self,
        id: ConversationId,
        agent: Option<AgentId>,
        text: MessageText,
    ) -> Result<Message, StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let conversation = load_conversation(&mut tx, id).await?;
        if conversation.status != ConversationStatus::Agent {
            return Err(StoreError::Conflict(format!(
                "the conversation is {}; an agent must accept its ticket before replying",
                conversation.status
            )));
        }
        let row =
            sqlx::query("SELECT * FROM handoffs WHERE conversation_id = ? AND status = 'accepted'")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict("the conversation has no accepted ticket".into())
                })?;
        let handoff = row_handoff(&row)?;
        check_owner(&handoff, agent)?;
        let out = OutboundMessage {
            author_kind: AuthorKind::Agent,
            agent_id: agent.or(handoff.assigned_agent_id),
            text,
            html: None,
        };
        let message_id = insert_outbound(&mut tx, &conversation, &out, now).await?;
        if handoff.first_reply_at.is_none() {
            sqlx::query("UPDATE handoffs SET first_reply_at = ? WHERE id = ?")
                .bind(now.as_millis())
                .bind(handoff.id.to_string())
                .execute(&mut *tx)
                .await?;
            emit(
                &mut tx,
                HandoffEventKind::FirstAgentReply,
                &handoff,
                conversation.channel,
                now,
            )
            .await?;
        }
        let message = load_message(&mut tx, message_id).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn unprocessed_inbound(
        &self,
        limit: u32,
    ) -> Result<Vec<(MessageId, ConversationId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, conversation_id FROM messages WHERE needs_processing = 1 ORDER BY created_at, id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((parse_col(r, "id")?, parse_col(r, "conversation_id")?)))
            .collect()
    }

    async fn mark_processed(&self, id: MessageId) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET needs_processing = 0 WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM messages
             WHERE delivery_status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
             ORDER BY next_attempt_at, created_at LIMIT ?",
        )
        .bind(now.as_millis())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    message: row_message(r)?,
                    channel: parse_col(r, "channel")?,
                    attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
                })
            })
            .collect()
    }

    async fn record_delivery(
        &self,
        id: MessageId,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let (status, next, error) = match outcome {
            DeliveryOutcome::Sent => (DeliveryStatus::Sent, None, None),
            DeliveryOutcome::RetryAt(at, e) => {
                (DeliveryStatus::Pending, Some(at.as_millis()), Some(e))
            }
            DeliveryOutcome::Failed(e) => (DeliveryStatus::Failed, None, Some(e)),
        };
        sqlx::query(
            "UPDATE messages SET delivery_status = ?, next_attempt_at = ?, delivery_error = ?, attempts = attempts + 1
             WHERE id = ? AND delivery_status = 'pending'",
        )
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .bind(id.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn request_handoff(
        &self,
        id: ConversationId,
        request: HandoffRequest,
    ) -> Result<(Handoff, Message), StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let conversation = load_conversation(&mut tx, id).await?;
        if conversation.status != ConversationStatus::Bot {
            return Err(StoreError::Conflict(format!(
                "the conversation is {}; only a conversation with the bot can be handed off",
                conversation.status
            )));
        }
        set_conversation_status(
            &mut tx,
            id,
            ConversationStatus::Bot,
            ConversationStatus::Queued,
            now,
        )
        .await?;
        let handoff_id = HandoffId::new();
        sqlx::query(
            "INSERT INTO handoffs (id, conversation_id, reason, reason_detail, summary, priority, priority_rank,
                                   required_skills, status, requested_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
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
        .execute(&mut *tx)
        .await?;
        let handoff = load_handoff(&mut tx, handoff_id).await?;
        emit(
            &mut tx,
            HandoffEventKind::Requested,
            &handoff,
            conversation.channel,
            now,
        )
        .await?;
        emit(
            &mut tx,
            HandoffEventKind::Queued,
            &handoff,
            conversation.channel,
            now,
        )
        .await?;
        let notice = OutboundMessage {
            author_kind: AuthorKind::System,
            agent_id: None,
            text: request.notice,
            html: None,
        };
        let notice_id = insert_outbound(&mut tx, &conversation, &notice, now).await?;
        let notice = load_message(&mut tx, notice_id).await?;
        tx.commit().await?;
        Ok((handoff, notice))
    }

    async fn assign_queued(&self) -> Result<Vec<Assignment>, StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let queued = sqlx::query(
            "SELECT h.*, c.channel FROM handoffs h JOIN conversations c ON c.id = h.conversation_id
             WHERE h.status = 'queued' ORDER BY h.priority_rank DESC, h.requested_at, h.id LIMIT 500",
        )
        .fetch_all(&mut *tx)
        .await?;
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        struct Candidate {
            id: AgentId,
            skills: Vec<Skill>,
            free: i64,
        }
        let mut agents: Vec<Candidate> = sqlx::query(
            "SELECT a.id, a.skills, a.max_concurrent - (
                 SELECT count(*) FROM handoffs h WHERE h.assigned_agent_id = a.id AND h.status IN ('assigned', 'accepted')
             ) AS free
             FROM agents a WHERE a.presence = 'online'
             ORDER BY a.last_assigned_at, a.id",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(Candidate {
                id: parse_col(r, "id")?,
                skills: parse_skills(r, "skills")?,
                free: r.try_get("free")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        // Strict rotation even within one millisecond: each assignment gets the next number.
        let mut turn: i64 =
            sqlx::query("SELECT coalesce(max(last_assigned_at), 0) AS m FROM agents")
                .fetch_one(&mut *tx)
                .await?
                .try_get("m")?;
        turn = turn.max(now.as_millis());

        let mut assigned = Vec::new();
        for row in &queued {
            let handoff = row_handoff(row)?;
            let channel: ChannelKind = parse_col(row, "channel")?;
            let Some(pos) = agents.iter().position(|a| {
                a.free > 0
                    && handoff
                        .required_skills
                        .iter()
                        .all(|s| a.skills.iter().any(|k| k.as_str() == s))
            }) else {
                continue;
            };
            let mut agent = agents.remove(pos);
            turn += 1;
            sqlx::query("UPDATE handoffs SET status = 'assigned', assigned_agent_id = ?, assigned_at = ? WHERE id = ?")
                .bind(agent.id.to_string())
                .bind(now.as_millis())
                .bind(handoff.id.to_string())
                .execute(&mut *tx)
                .await?;
            set_conversation_status(
                &mut tx,
                handoff.conversation_id,
                ConversationStatus::Queued,
                ConversationStatus::Assigned,
                now,
            )
            .await?;
            sqlx::query("UPDATE conversations SET assigned_agent_id = ? WHERE id = ?")
                .bind(agent.id.to_string())
                .bind(handoff.conversation_id.to_string())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE agents SET last_assigned_at = ? WHERE id = ?")
                .bind(turn)
                .bind(agent.id.to_string())
                .execute(&mut *tx)
                .await?;
            let handoff = Handoff {
                status: HandoffStatus::Assigned,
                assigned_agent_id: Some(agent.id),
                assigned_at: Some(now),
                ..handoff
            };
            emit(&mut tx, HandoffEventKind::Assigned, &handoff, channel, now).await?;
            assigned.push(Assignment {
                handoff_id: handoff.id,
                conversation_id: handoff.conversation_id,
                agent_id: agent.id,
            });
            agent.free -= 1;
            // The agent just served goes to the back of the line.
            agents.push(agent);
        }
        tx.commit().await?;
        Ok(assigned)
    }

    async fn ticket_step(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, StoreError> {
        let mut tx = self.write.begin().await?;
        let now = Timestamp::now();
        let handoff = load_handoff(&mut tx, id).await?;
        if !step.applies_to(handoff.status) {
            return Err(StoreError::Conflict(format!(
                "the ticket is {}; it cannot be {}",
                handoff.status,
                step.done()
            )));
        }
        check_owner(&handoff, agent)?;
        let conversation = load_conversation(&mut tx, handoff.conversation_id).await?;
        set_conversation_status(
            &mut tx,
            conversation.id,
            conversation.status,
            step.conversation_status(),
            now,
        )
        .await?;
        if step == TicketStep::Release {
            sqlx::query("UPDATE conversations SET assigned_agent_id = NULL WHERE id = ?")
                .bind(conversation.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE handoffs SET status = ?1,
                 accepted_at = CASE WHEN ?1 = 'accepted' THEN ?2 ELSE accepted_at END,
                 closed_at = CASE WHEN ?1 IN ('resolved', 'released') THEN ?2 ELSE closed_at END
             WHERE id = ?3",
        )
        .bind(step.handoff_status().as_str())
        .bind(now.as_millis())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let handoff = load_handoff(&mut tx, id).await?;
        emit(&mut tx, step.event(), &handoff, conversation.channel, now).await?;
        tx.commit().await?;
        Ok(handoff)
    }

    async fn handoff(&self, id: HandoffId) -> Result<Handoff, StoreError> {
        let mut conn = self.read.acquire().await?;
        load_handoff(&mut conn, id).await
    }

    async fn latest_handoff(&self, id: ConversationId) -> Result<Option<Handoff>, StoreError> {
        let row = sqlx::query("SELECT * FROM handoffs WHERE conversation_id = ? ORDER BY requested_at DESC, id DESC LIMIT 1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(row_handoff).transpose()
    }

    async fn list_handoffs(
        &self,
        status: Option<HandoffStatus>,
        limit: u32,
    ) -> Result<Vec<Handoff>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM handoffs WHERE (?1 IS NULL OR status = ?1)
             ORDER BY priority_rank DESC, requested_at, id LIMIT ?2",
        )
        .bind(status.map(HandoffStatus::as_str))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(row_handoff).collect()
    }

    async fn create_agent(&self, agent: NewAgent) -> Result<Agent, StoreError> {
        let id = AgentId::new();
        let now = Timestamp::now();
        let result = sqlx::query(
            "INSERT INTO agents (id, name, email, skills, max_concurrent, presence, created_at)
             VALUES (?, ?, ?, ?, ?, 'offline', ?)",
        )
        .bind(id.to_string())
        .bind(&agent.name)
        .bind(agent.email.as_str())
        .bind(skills_json(&agent.skills))
        .bind(agent.max_concurrent as i64)
        .bind(now.as_millis())
        .execute(&self.write)
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
        self.agent(id).await
    }

    async fn agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.write)
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        row_agent(&row)
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY name, id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(row_agent).collect()
    }

    async fn set_presence(&self, id: AgentId, presence: Presence) -> Result<Agent, StoreError> {
        let done = sqlx::query("UPDATE agents SET presence = ? WHERE id = ?")
            .bind(presence.as_str())
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        self.agent(id).await
    }

    async fn insert_token(
        &self,
        token_hash: &str,
        role: Role,
        label: &str,
    ) -> Result<(), StoreError> {
        let (role_name, agent) = match role {
            Role::Admin => ("admin", None),
            Role::Agent(a) => ("agent", Some(a.to_string())),
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, role, agent_id, label, created_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(token_hash) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(token_hash)
        .bind(role_name)
        .bind(agent)
        .bind(label)
        .bind(Timestamp::now().as_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn role_for_token(&self, token_hash: &str) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query(
            "SELECT role, agent_id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        match role.as_str() {
            "admin" => Ok(Some(Role::Admin)),
            "agent" => Ok(Some(Role::Agent(parse_col(&row, "agent_id")?))),
            other => Err(StoreError::Corrupt(format!("unknown token role {other:?}"))),
        }
    }

    async fn outbox_batch(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, payload FROM event_outbox ORDER BY seq LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    seq: r.try_get("seq")?,
                    event: json_col(r, "payload")?,
                })
            })
            .collect()
    }

    async fn outbox_ack(&self, up_to_seq: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM event_outbox WHERE seq <= ?")
            .bind(up_to_seq)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM event_outbox")
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }
}
