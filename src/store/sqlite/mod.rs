//! The SQLite store: the embedded default, one file under the data directory.
//!
//! Writes go through a single connection (SQLite has one writer at a time anyway; queueing in
//! the pool beats spinning on `SQLITE_BUSY`), reads through a small pool of their own (WAL lets
//! readers run beside the writer). Inbound messages are group-committed: the ingest writer takes
//! every message waiting, stores them in one transaction and acknowledges each after the single
//! fsync, which is what makes durable acknowledgements cheap.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

mod accounts;
mod email;
mod merged;
mod routing;
mod writer;
use writer::{Job, Work};

use super::rows::{
    check_owner, corrupt, dead_letter, decode_outbox_payload, encode_outbox_payload, json_col,
    opt_ts, parse_col, parse_opt_col, parse_skills, prefixed_conversation, row_agent,
    row_conversation, row_handoff, row_message, skills_json, truncate_error, ts,
};
use super::*;
use crate::model::{CustomerId, HandoffEventKind, IdentityKind};

/// How often the checkpointer copies committed pages from the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages after which the writer checkpoints by itself: only reached when the checkpointer
/// has fallen far behind (80 MB of 4 KB pages), so the WAL stays bounded whatever happens.
const WRITER_CHECKPOINT_PAGES: &str = "20000";

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    checkpoints: SqlitePool,
    writes: mpsc::Sender<Work>,
    /// The checkpointer task stops once this is gone.
    _alive: std::sync::Arc<()>,
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
        // Checkpoints leave the writer: SQLite's automatic checkpoint runs inside the COMMIT that
        // crosses the threshold, and copying a thousand pages and fsyncing the file there made
        // every acknowledgement in that batch wait for it (the ack latency's tail). A
        // connection of its own checkpoints instead, every 250 ms, beside the writer (WAL lets
        // both run at once).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let alive = std::sync::Arc::new(());
        tokio::spawn(checkpointer(
            checkpoints.clone(),
            std::sync::Arc::downgrade(&alive),
        ));
        let (writes, jobs) = mpsc::channel(4 * writer::MAX_BATCH);
        // The writer gets a thread and a runtime of its own: it is the one serial path, and on a
        // shared runtime every statement's wake-up would queue behind HTTP and bot tasks.
        let pool = write.clone();
        std::thread::Builder::new()
            .name("baton-store-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(writer::run(pool, jobs)),
                    Err(e) => tracing::error!(error = %e, "cannot start the store writer"),
                }
            })
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        Ok(Self {
            read,
            write,
            checkpoints,
            writes,
            _alive: alive,
        })
    }

    /// One checkpoint step: copies what committed transactions left in the WAL into the
    /// database file without waiting for readers or the writer (`PASSIVE`). Returns the WAL's
    /// size and how much of it is now in the database file, in pages.
    pub async fn checkpoint(&self) -> Result<(i64, i64), StoreError> {
        checkpoint_once(&self.checkpoints).await
    }

    /// Applies migrations to a database file and closes it (`baton migrate`).
    pub async fn migrate(path: &Path) -> Result<(), StoreError> {
        Self::open(path).await?.close().await;
        Ok(())
    }

    /// Runs `work` in the writer's next group commit, inside a savepoint, and returns its
    /// result once committed.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(true, work).await
    }

    /// Like [`SqliteStore::write`], for work of exactly one statement (or of statements each of
    /// which leaves the store consistent on its own): no savepoint, two round trips fewer.
    async fn write_one<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(false, work).await
    }

    async fn submit<T, F>(&self, savepoint: bool, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (job, result) = Job::boxed(savepoint, work);
        self.send(Work::Job(job), result).await
    }

    /// Hands work to the writer and waits for its outcome (after the COMMIT).
    async fn send<T>(
        &self,
        work: Work,
        result: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.writes
            .send(work)
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        result
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))?
    }

    /// Closes the pools, waiting for in-flight work.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
        self.checkpoints.close().await;
    }

    /// [`Store::outbox_batch`] one row at a time: slower, but whatever the payloads hold.
    async fn outbox_batch_by_row(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, payload FROM event_outbox WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.read)
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
}

async fn checkpoint_once(pool: &SqlitePool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok((row.try_get(1)?, row.try_get(2)?))
}

/// Checkpoints every [`CHECKPOINT_EVERY`] until the store is dropped.
async fn checkpointer(pool: SqlitePool, alive: std::sync::Weak<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() || pool.is_closed() {
            break;
        }
        if let Err(e) = checkpoint_once(&pool).await {
            // The writer's own checkpoint at WRITER_CHECKPOINT_PAGES still bounds the WAL.
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
    pool.close().await;
}

/// Whether an SQLite result code means the database cannot serve right now (busy, locked,
/// read-only, I/O error, corrupt, full, cannot open) rather than a bad statement.
pub(super) fn unavailable(code: Option<&str>) -> bool {
    // SQLite's primary result code is the low byte of the extended code.
    let code = code.and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
    matches!(code, 5 | 6 | 8 | 10 | 11 | 13 | 14)
}

/// [`Store::conversation_activity`]: `?1`, `?2` the period, `?3` the channel or NULL. Reads the
/// period's inbound messages through `messages_inbound_by_time`.
const CONVERSATION_ACTIVITY: &str = "\
    SELECT count(*) AS active, coalesce(sum(handed_off), 0) AS handed_off FROM (
        SELECT m.conversation_id,
               EXISTS (SELECT 1 FROM handoffs h
                       WHERE h.conversation_id = m.conversation_id
                         AND h.requested_at >= ?1 AND h.requested_at < ?2) AS handed_off
        FROM messages m
        WHERE m.direction = 'in' AND m.created_at >= ?1 AND m.created_at < ?2
          AND (?3 IS NULL OR m.channel = ?3)
        GROUP BY m.conversation_id
    )";

/// Splits the one-row form of an outbox batch (positions joined by commas, payloads by the
/// ASCII record separator) into entries. `None` when the pieces do not add up to `n` rows:
/// a payload holding the separator itself.
fn split_outbox_batch(seqs: &str, payloads: &str, n: usize) -> Option<Vec<OutboxEntry>> {
    let mut entries = Vec::with_capacity(n);
    let mut payloads = payloads.split('\x1e');
    for seq in seqs.split(',') {
        entries.push(OutboxEntry {
            seq: seq.parse().ok()?,
            event: decode_outbox_payload(payloads.next()?),
        });
    }
    if entries.len() != n || payloads.next().is_some() {
        return None;
    }
    if !entries.is_sorted_by_key(|e| e.seq) {
        entries.sort_by_key(|e| e.seq);
    }
    Some(entries)
}

/// The most outbox rows one acknowledging job deletes.
const ACK_PIECE: i64 = 5_000;

/// Runs of positions cut into pieces of at most `max` positions each, in order.
fn ack_pieces(runs: Vec<(i64, i64)>, max: i64) -> Vec<Vec<(i64, i64)>> {
    let mut pieces: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut room = 0;
    for (mut first, last) in runs {
        while first <= last {
            if room == 0 {
                pieces.push(Vec::new());
                room = max;
            }
            let end = last.min(first + room - 1);
            pieces.last_mut().expect("pushed above").push((first, end));
            room -= end - first + 1;
            first = end + 1;
        }
    }
    pieces
}

/// Sorted, distinct positions as runs of consecutive ones, `(first, last)` inclusive.
fn consecutive_runs(mut seqs: Vec<i64>) -> Vec<(i64, i64)> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for seq in seqs {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

// ---------------------------------------------------------------------------------------------
// Inbound.

/// Whether the merged one-statement insert may take a message: it names no conversation and
/// the sender brings no email address or phone number to record.
fn fast_path_applies(m: &InboundMessage) -> bool {
    m.conversation_id.is_none() && m.sender.email.is_none() && m.sender.phone.is_none()
}

/// The general inbound path: recognizes redeliveries, records what a sender brings (name,
/// email, phone), reopens or starts the conversation, and stores the message.
async fn ingest_one(
    conn: &mut SqliteConnection,
    m: &InboundMessage,
    now: Timestamp,
) -> Result<IngestReceipt, StoreError> {
    let channel = m.channel.as_str();
    let message_id = MessageId::new();
    let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
    let row = sqlx::query(
        "SELECT
             (SELECT id FROM messages WHERE channel = ?1 AND external_id = ?2 AND direction = 'in') AS dup_id,
             (SELECT conversation_id FROM messages
              WHERE channel = ?1 AND external_id = ?2 AND direction = 'in') AS dup_conversation,
             i.customer_id AS customer_id,
             c.display_name IS NULL AS unnamed,
             (SELECT id FROM conversations
              WHERE customer_id = i.customer_id AND channel = ?1 AND status != 'resolved'
              ORDER BY created_at DESC LIMIT 1) AS open_conversation
         FROM (SELECT 1) AS one
         LEFT JOIN identities i ON i.kind = ?3 AND i.value = ?4
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
         VALUES (?, ?, ?, 'in', 'customer', ?, ?, ?, ?, 'received', 1, ?)",
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
    conn: &mut SqliteConnection,
    channel: ChannelKind,
    customer: CustomerId,
    now: Timestamp,
) -> Result<ConversationId, StoreError> {
    let open = sqlx::query(
        "SELECT id FROM conversations WHERE customer_id = ? AND channel = ? AND status != 'resolved'
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
    conn: &mut SqliteConnection,
    customer: CustomerId,
    sender: &SenderProfile,
    unnamed: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    if unnamed && let Some(name) = &sender.display_name {
        sqlx::query("UPDATE customers SET display_name = ? WHERE id = ? AND display_name IS NULL")
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
        sqlx::query("INSERT OR IGNORE INTO identities (kind, value, customer_id, created_at) VALUES (?, ?, ?, ?)")
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

/// Fetches one row by id and maps it; `what` names it in the not-found error.
async fn load_one<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    id: String,
    what: &'static str,
    map: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let row = sqlx::query(sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound(what))?;
    map(&row)
}

async fn load_conversation(
    conn: &mut SqliteConnection,
    id: ConversationId,
) -> Result<Conversation, StoreError> {
    let sql = "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at,
                      bot_fallbacks, handed_back_at, handback_note
               FROM conversations WHERE id = ?";
    load_one(conn, sql, id.to_string(), "conversation", row_conversation).await
}

async fn load_handoff(conn: &mut SqliteConnection, id: HandoffId) -> Result<Handoff, StoreError> {
    load_one(
        conn,
        "SELECT * FROM handoffs WHERE id = ?",
        id.to_string(),
        "handoff",
        row_handoff,
    )
    .await
}

async fn load_message(conn: &mut SqliteConnection, id: MessageId) -> Result<Message, StoreError> {
    load_one(
        conn,
        "SELECT * FROM messages WHERE id = ?",
        id.to_string(),
        "message",
        row_message,
    )
    .await
}

async fn load_agent(conn: &mut SqliteConnection, id: AgentId) -> Result<Agent, StoreError> {
    load_one(
        conn,
        "SELECT * FROM agents WHERE id = ?",
        id.to_string(),
        "agent",
        row_agent,
    )
    .await
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
                               attachments, template, delivery_status, next_attempt_at, created_at)
         VALUES (?, ?, ?, 'out', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    )
    .with(handoff.team.as_deref(), handoff.rule.as_deref());
    emit_event(conn, &event, now).await
}

/// Appends a prepared event to the outbox, in the caller's transaction.
async fn emit_event(
    conn: &mut SqliteConnection,
    event: &HandoffEvent,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = encode_outbox_payload(event);
    sqlx::query("INSERT INTO event_outbox (event_id, payload, created_at) VALUES (?, ?, ?)")
        .bind(event.event_id.to_string())
        .bind(payload)
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, inbound: InboundMessage) -> Result<IngestReceipt, StoreError> {
        let inbound = std::sync::Arc::new(inbound);
        if fast_path_applies(&inbound) {
            // Merged with the batch's other such messages; falls back to the full path itself.
            let (item, result) = merged::Ingest::new(inbound);
            return self.send(Work::Ingest(item), result).await;
        }
        self.write(move |tx| {
            Box::pin(async move { ingest_one(tx, &inbound, Timestamp::now()).await })
        })
        .await
    }

    async fn create_web_conversation(
        &self,
        sender: SenderProfile,
        token_hash: String,
    ) -> Result<Conversation, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = Timestamp::now();
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
        let row = sqlx::query("SELECT widget_token_hash FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row
            .map(|r| r.try_get("widget_token_hash"))
            .transpose()?
            .flatten())
    }

    async fn widget_visitor(
        &self,
        id: ConversationId,
    ) -> Result<Option<(String, Identity)>, StoreError> {
        let row = sqlx::query(
            "SELECT c.widget_token_hash, i.value FROM conversations c
             JOIN identities i ON i.customer_id = c.customer_id AND i.kind = 'web_chat'
             WHERE c.id = ? AND c.widget_token_hash IS NOT NULL",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let value: String = r.try_get("value")?;
            let identity = Identity::channel(ChannelKind::WebChat, &value)
                .map_err(|e| StoreError::Corrupt(format!("web chat identity: {e}")))?;
            Ok((r.try_get("widget_token_hash")?, identity))
        })
        .transpose()
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer, StoreError> {
        let mut conn = self.read.acquire().await?;
        let row =
            sqlx::query("SELECT id, display_name, tags, created_at FROM customers WHERE id = ?")
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
            tags: json_col(&row, "tags")?,
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
            "SELECT id, channel, status, customer_id, assigned_agent_id, subject, created_at, updated_at,
                    bot_fallbacks, handed_back_at, handback_note
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
             LEFT JOIN (SELECT * FROM messages WHERE conversation_id = ?1
                        ORDER BY created_at DESC, id DESC LIMIT ?2) m ON 1
             WHERE c.id = ?1
             ORDER BY m.created_at, m.id",
        )
        .bind(id.to_string())
        .bind(limit as i64)
        .fetch_all(&self.read)
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
        let mut conn = self.read.acquire().await?;
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
                    "SELECT * FROM handoffs WHERE conversation_id = ? AND status = 'accepted'",
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
                    sqlx::query("UPDATE handoffs SET first_reply_at = ? WHERE id = ?")
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
            "SELECT id, conversation_id FROM messages WHERE needs_processing = 1 ORDER BY created_at, id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
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
        let (item, result) = merged::Complete::new(conversation, inbound, replies);
        self.send(Work::Complete(item), result).await
    }

    async fn mark_processed(&self, id: MessageId) -> Result<(), StoreError> {
        self.write_one(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE messages SET needs_processing = 0 WHERE id = ?")
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
                    template: r
                        .try_get::<Option<String>, _>("template")?
                        .map(|t| serde_json::from_str(&t))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("message template: {e}")))?,
                })
            })
            .collect()
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
                    "WITH o AS (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.status') AS status,
                                       json_extract(value, '$.next') AS next, json_extract(value, '$.error') AS error,
                                       json_extract(value, '$.external') AS external
                                FROM json_each(?1))
                     UPDATE messages SET delivery_status = (SELECT status FROM o WHERE o.id = messages.id),
                                         next_attempt_at = (SELECT next FROM o WHERE o.id = messages.id),
                                         delivery_error = (SELECT error FROM o WHERE o.id = messages.id),
                                         external_id = coalesce((SELECT external FROM o WHERE o.id = messages.id), external_id),
                                         attempts = attempts + 1
                     WHERE messages.id IN (SELECT id FROM o) AND messages.delivery_status = 'pending'",
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
                let conversation = load_conversation(&mut *tx, id).await?;
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
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
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
                let notice = match request.notice {
                    Some(text) => {
                        let notice = OutboundMessage::text(AuthorKind::System, None, text);
                        let id = insert_outbound(&mut *tx, &conversation, &notice, now).await?;
                        Some(load_message(&mut *tx, id).await?)
                    }
                    None => None,
                };
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
                let handoff = load_handoff(&mut *tx, id).await?;
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
                let handoff = load_handoff(&mut *tx, id).await?;
                emit(&mut *tx, step.event(), &handoff, conversation.channel, now).await?;
                Ok(handoff)
            })
        })
        .await
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

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        self.write(move |tx| Box::pin(accounts::create_user(tx, user)))
            .await
    }

    async fn user(&self, id: UserId) -> Result<User, StoreError> {
        let mut conn = self.read.acquire().await?;
        accounts::load_user(&mut conn, id).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut conn = self.read.acquire().await?;
        accounts::list_users(&mut conn).await
    }

    async fn login_candidate(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<LoginCandidate>, StoreError> {
        let mut conn = self.read.acquire().await?;
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
        let mut conn = self.read.acquire().await?;
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
        let mut conn = self.read.acquire().await?;
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
        let mut conn = self.read.acquire().await?;
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
                     VALUES (?, ?, ?, ?, ?, ?, 'offline', ?, ?, ?)",
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
        // Reads never touch the write pool: its one connection belongs to the writer.
        let mut conn = self.read.acquire().await?;
        load_agent(&mut conn, id).await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY name, id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(row_agent).collect()
    }

    async fn set_presence(&self, id: AgentId, presence: Presence) -> Result<Agent, StoreError> {
        self.write_one(move |tx| {
            Box::pin(async move {
                let done = sqlx::query("UPDATE agents SET presence = ? WHERE id = ?")
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
                     VALUES (?, ?, ?, ?, ?, ?, (SELECT id FROM users WHERE id = ?4))
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
        let mut conn = self.read.acquire().await?;
        accounts::role_for_token(&mut conn, token_hash).await
    }

    async fn outbox_batch(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        // The whole batch as one row: sqlx hands rows over from its worker thread one at a
        // time, which cost more than SQLite's reading and serde's parsing together.
        let row = sqlx::query(
            // Both aggregates take the rows in the same order, so the n-th position goes with
            // the n-th payload; the order itself is checked below (an ORDER BY inside the
            // aggregates would sort the payloads a second time).
            "SELECT count(*) AS n,
                    group_concat(seq, ',') AS seqs,
                    group_concat(payload, char(30)) AS payloads
             FROM (SELECT seq, payload FROM event_outbox WHERE seq > ? ORDER BY seq LIMIT ?)",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_one(&self.read)
        .await?;
        let n: i64 = row.try_get("n")?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let seqs: String = row.try_get("seqs")?;
        let payloads: String = row.try_get("payloads")?;
        match split_outbox_batch(&seqs, &payloads, n as usize) {
            Some(entries) => Ok(entries),
            // A payload holding the separator (JSON never does, a hand-edited row might):
            // read this batch row by row instead.
            None => self.outbox_batch_by_row(after, limit).await,
        }
    }

    async fn outbox_ack(&self, seqs: Vec<i64>) -> Result<(), StoreError> {
        let runs = consecutive_runs(seqs);
        if let [(first, last)] = runs[..] {
            // When these are all the outbox holds (a steady flow, the end of a backlog), a
            // DELETE without WHERE empties it: SQLite frees whole pages instead of taking
            // rows out one by one, about ten times cheaper (75,000 events: 22 ms instead of
            // ~190). The writer is the only one writing, so nothing slips in between.
            let emptied = self
                .write_one(move |tx| {
                    Box::pin(async move {
                        // Two subqueries: each is a single min() or max(), which SQLite
                        // answers from the end of the table instead of scanning it.
                        let row = sqlx::query(
                            "SELECT (SELECT min(seq) FROM event_outbox) AS lo,
                                    (SELECT max(seq) FROM event_outbox) AS hi",
                        )
                        .fetch_one(&mut *tx)
                        .await?;
                        let (lo, hi): (Option<i64>, Option<i64>) =
                            (row.try_get("lo")?, row.try_get("hi")?);
                        match (lo, hi) {
                            (Some(lo), Some(hi)) if lo >= first && hi <= last => {
                                sqlx::query("DELETE FROM event_outbox")
                                    .execute(&mut *tx)
                                    .await?;
                                Ok(true)
                            }
                            (None, _) | (_, None) => Ok(true),
                            _ => Ok(false),
                        }
                    })
                })
                .await?;
            if emptied {
                return Ok(());
            }
        }
        // In pieces, each its own job: the writer is the store's one serial path, and one
        // DELETE of 50,000 events would hold every other write up for a tenth of a second
        // (pieces are also cheaper per row: fewer dirty pages at once).
        for piece in ack_pieces(runs, ACK_PIECE) {
            self.write_one(move |tx| {
                Box::pin(async move {
                    // Each run of consecutive positions is exactly those rows, so a range
                    // scan deletes them, no more, far cheaper than looking each one up. Every
                    // statement stands alone: the rows of a run are gone or all still there.
                    for (first, last) in piece {
                        sqlx::query("DELETE FROM event_outbox WHERE seq BETWEEN ? AND ?")
                            .bind(first)
                            .bind(last)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(())
                })
            })
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
                        "INSERT OR IGNORE INTO event_dead_letters
                             (seq, event_id, payload, error, created_at, failed_at)
                         SELECT seq, event_id, payload, ?, created_at, ?
                         FROM event_outbox WHERE seq = ?",
                    )
                    .bind(truncate_error(&error))
                    .bind(now)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM event_outbox WHERE seq = ?")
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
             FROM event_dead_letters ORDER BY seq LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(dead_letter).collect()
    }

    async fn dead_letters_requeue(&self) -> Result<u64, StoreError> {
        self.write_one(|tx| {
            Box::pin(async move {
                // New positions, after every event waiting: the shipper's cursor has passed
                // the old ones.
                let moved = sqlx::query(
                    "INSERT INTO event_outbox (event_id, payload, created_at)
                     SELECT event_id, payload, created_at FROM event_dead_letters ORDER BY seq",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM event_dead_letters")
                    .execute(&mut *tx)
                    .await?;
                Ok(moved)
            })
        })
        .await
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM event_dead_letters")
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) AS n FROM event_outbox")
            .fetch_one(&self.read)
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
        let row = sqlx::query(CONVERSATION_ACTIVITY)
            .bind(from.as_millis())
            .bind(to.as_millis())
            .bind(channel.map(ChannelKind::as_str))
            .fetch_one(&self.read)
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
             FROM conversations c WHERE c.id = ?",
        )
        .bind(conversation.to_string())
        .fetch_optional(&self.read)
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
                    "UPDATE messages SET delivery_status = ?1, delivery_error = coalesce(?2, delivery_error)
                     WHERE channel = ?3 AND external_id = ?4 AND direction = 'out'
                       AND CASE delivery_status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1
                           WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 4 END < ?5",
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
                     JOIN identities i ON i.customer_id = c.customer_id AND i.kind = ?3 AND i.value = ?4
                     WHERE m.channel = ?1 AND m.external_id = ?2 AND m.direction = 'in'",
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
                sqlx::query("INSERT INTO message_edits (message_id, old_text, edited_at) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(&old)
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE messages SET text = ? WHERE id = ?")
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
        let token = crate::channels::email::thread::new_reply_token();
        self.write(move |tx| {
            Box::pin(async move { email::ingest(tx, &email, &token, Timestamp::now()).await })
        })
        .await
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
             FROM attachment_blobs b JOIN messages m ON m.id = b.message_row WHERE b.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
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
            "SELECT last_uid FROM imap_positions WHERE mailbox = ? AND uid_validity = ?",
        )
        .bind(mailbox)
        .bind(uid_validity as i64)
        .fetch_optional(&self.read)
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
                    "INSERT INTO imap_positions (mailbox, uid_validity, last_uid, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (mailbox, uid_validity)
                     DO UPDATE SET last_uid = max(last_uid, excluded.last_uid), updated_at = excluded.updated_at",
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
                    Ok(sqlx::query("UPDATE customers SET tags = ? WHERE id = ?")
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
                sqlx::query("UPDATE conversations SET bot_fallbacks = ? WHERE id = ?")
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
        let mut conn = self.read.acquire().await?;
        routing::bot_session(&mut conn, id).await
    }

    async fn escalation_rules(&self) -> Result<Option<Vec<serde_json::Value>>, StoreError> {
        let mut conn = self.read.acquire().await?;
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

    async fn routing_state(&self) -> Result<(Vec<AgentRouting>, Vec<OpenTicket>), StoreError> {
        let mut conn = self.read.acquire().await?;
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
        let mut conn = self.read.acquire().await?;
        routing::last_agent_of(&mut conn, customer).await
    }

    async fn queue_settings(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query("SELECT team, settings FROM queues ORDER BY team")
            .fetch_all(&self.read)
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
                    "INSERT INTO queues (team, settings, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (team) DO UPDATE SET settings = ?2, updated_at = ?3",
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
        let mut conn = self.read.acquire().await?;
        routing::recent_acceptances(&mut conn, team, since).await
    }

    async fn silent_queued(
        &self,
        cutoff: Timestamp,
        limit: u32,
    ) -> Result<Vec<HandoffId>, StoreError> {
        let mut conn = self.read.acquire().await?;
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
        self.write(move |tx| Box::pin(async move { routing::update_agent(tx, id, update).await }))
            .await
    }

    async fn told(
        &self,
        ids: Vec<HandoffId>,
    ) -> Result<
        std::collections::HashMap<HandoffId, (Option<u32>, Option<i64>, Option<Timestamp>)>,
        StoreError,
    > {
        let json = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT id, told_position, told_wait_ms, told_at FROM handoffs
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(json)
        .fetch_all(&self.read)
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
        let mut conn = self.read.acquire().await?;
        routing::handoff_context(&mut conn, customer, handoff).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identity;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        (dir, store)
    }

    fn manual_handoff() -> HandoffRequest {
        HandoffRequest {
            reason: HandoffReason::Manual,
            reason_detail: None,
            summary: None,
            priority: Priority::Normal,
            required_skills: vec![],
            notice: Some(MessageText::parse("a person is coming").unwrap()),
            team: None,
            rule: None,
            intent: None,
            fields: Default::default(),
            language: None,
        }
    }

    /// An API-channel message from `sender`.
    pub(in crate::store::sqlite) fn inbound(
        sender: &str,
        external_id: &str,
        text: &str,
    ) -> InboundMessage {
        InboundMessage {
            channel: ChannelKind::Api,
            sender: SenderProfile {
                identity: Identity::channel(ChannelKind::Api, sender).unwrap(),
                display_name: None,
                email: None,
                phone: None,
            },
            conversation_id: None,
            external_id: Some(external_id.into()),
            text: MessageText::parse(text).unwrap(),
            html: None,
            attachments: vec![],
            sent_at: None,
        }
    }

    async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
        sqlx::query(sql)
            .fetch_one(&store.read)
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn a_widget_visitor_is_read_in_one_query_with_the_same_answer_as_three() {
        let (_dir, store) = open().await;
        let visitor = Identity::channel(ChannelKind::WebChat, "visitor-1").unwrap();
        let c = store
            .create_web_conversation(
                SenderProfile {
                    identity: visitor.clone(),
                    display_name: None,
                    email: None,
                    phone: None,
                },
                "hash-1".into(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.widget_visitor(c.id).await.unwrap(),
            Some(("hash-1".to_owned(), visitor))
        );
        assert_eq!(
            store.widget_token_hash(c.id).await.unwrap().as_deref(),
            Some("hash-1")
        );
        // A conversation of another channel has no token, and an unknown id is nothing.
        let api = store.ingest(inbound("someone", "m1", "hi")).await.unwrap();
        assert_eq!(
            store.widget_visitor(api.conversation_id).await.unwrap(),
            None
        );
        assert_eq!(
            store.widget_visitor(ConversationId::new()).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn commits_leave_the_wal_to_the_checkpointer_which_copies_all_of_it_into_the_file() {
        let (dir, store) = open().await;
        for i in 0..200 {
            store
                .ingest(inbound(&format!("c{i}"), &format!("m{i}"), "hello"))
                .await
                .unwrap();
        }
        // Whatever the background checkpointer did meanwhile, one more step leaves nothing
        // behind: every page of the WAL is in the database file.
        let (wal, copied) = store.checkpoint().await.unwrap();
        assert!(wal > 0, "the commits went to the WAL");
        assert_eq!(copied, wal);
        // The writer's own automatic checkpoint is raised far above SQLite's default 1,000
        // pages, so it never runs inside a COMMIT in normal operation.
        let mut conn = store.write.acquire().await.unwrap();
        let pages: i64 = sqlx::query("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(pages.to_string(), WRITER_CHECKPOINT_PAGES);
        drop(conn);
        store.close().await;
        // A reopened store finds every message.
        let reopened = SqliteStore::open(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        assert_eq!(count(&reopened, "SELECT count(*) FROM messages").await, 200);
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_alone_while_its_batch_neighbours_commit() {
        let (_dir, store) = open().await;
        let store = std::sync::Arc::new(store);
        // Many writers at once, so they share group commits; every third one fails after
        // writing a row, which must not survive, nor take its neighbours down with it.
        let jobs = (0..60).map(|i| {
            let store = store.clone();
            async move {
                store
                    .write(move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO customers (id, display_name, created_at) VALUES (?, ?, 0)")
                                .bind(CustomerId::new().to_string())
                                .bind(format!("c{i}"))
                                .execute(&mut *tx)
                                .await?;
                            if i % 3 == 0 {
                                return Err(StoreError::Conflict("deliberate".into()));
                            }
                            Ok(())
                        })
                    })
                    .await
            }
        });
        let results = futures_util::future::join_all(jobs).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 20);
        assert_eq!(count(&store, "SELECT count(*) FROM customers").await, 40);
    }

    #[tokio::test]
    async fn the_same_message_delivered_many_times_at_once_is_stored_once() {
        let (_dir, store) = open().await;
        let store = std::sync::Arc::new(store);
        let first = store.ingest(inbound("amy", "m-0", "hello")).await.unwrap();
        let burst = (0..30).map(|_| {
            let store = store.clone();
            async move { store.ingest(inbound("amy", "m-1", "again")).await.unwrap() }
        });
        let receipts = futures_util::future::join_all(burst).await;
        assert_eq!(receipts.iter().filter(|r| !r.duplicate).count(), 1);
        assert!(
            receipts
                .iter()
                .all(|r| r.conversation_id == first.conversation_id)
        );
        assert_eq!(count(&store, "SELECT count(*) FROM messages").await, 2);
    }

    #[tokio::test]
    async fn many_known_senders_writing_at_once_are_stored_once_each() {
        let (_dir, store) = open().await;
        let store = std::sync::Arc::new(store);
        for s in 0..50 {
            store
                .ingest(inbound(&format!("s{s}"), &format!("first-{s}"), "hi"))
                .await
                .unwrap();
        }
        for round in 0..20 {
            let burst = (0..50).map(|s| {
                let store = store.clone();
                async move {
                    store
                        .ingest(inbound(&format!("s{s}"), &format!("r{round}-{s}"), "more"))
                        .await
                        .unwrap()
                }
            });
            let receipts = futures_util::future::join_all(burst).await;
            assert_eq!(receipts.iter().filter(|r| r.duplicate).count(), 0);
        }
        assert_eq!(
            count(&store, "SELECT count(*) FROM messages").await,
            50 * 21
        );
    }

    #[tokio::test]
    async fn bot_replies_are_dropped_once_a_person_has_the_conversation() {
        let (_dir, store) = open().await;
        let receipt = store.ingest(inbound("bea", "m-1", "hello")).await.unwrap();
        let conversation = store.conversation(receipt.conversation_id).await.unwrap();
        store
            .request_handoff(conversation.id, manual_handoff())
            .await
            .unwrap();
        let reply = OutboundMessage::text(
            AuthorKind::Bot,
            None,
            MessageText::parse("late bot answer").unwrap(),
        );
        let stored = store
            .complete_inbound(&conversation, receipt.message_id, vec![reply])
            .await
            .unwrap();
        assert!(stored.is_empty());
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM messages WHERE author_kind = 'bot'"
            )
            .await,
            0
        );
        assert!(
            store.unprocessed_inbound(10).await.unwrap().is_empty(),
            "the message is handled all the same"
        );
    }

    #[tokio::test]
    async fn storing_the_bot_reply_marks_the_inbound_message_handled_in_the_same_write() {
        let (_dir, store) = open().await;
        let receipt = store.ingest(inbound("cy", "m-1", "hello")).await.unwrap();
        assert_eq!(store.unprocessed_inbound(10).await.unwrap().len(), 1);
        let conversation = store.conversation(receipt.conversation_id).await.unwrap();
        let reply = OutboundMessage::text(
            AuthorKind::Bot,
            None,
            MessageText::parse("hi there").unwrap(),
        );
        let stored = store
            .complete_inbound(&conversation, receipt.message_id, vec![reply])
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].delivery_status,
            DeliveryStatus::Sent,
            "API-channel replies are read back, not pushed"
        );
        assert!(store.unprocessed_inbound(10).await.unwrap().is_empty());
        let messages = store.messages(conversation.id, None, 10).await.unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1], stored[0]);
    }

    #[tokio::test]
    async fn answers_written_together_keep_each_conversations_own_outcome() {
        let (_dir, store) = open().await;
        let store = std::sync::Arc::new(store);
        let mut received = Vec::new();
        for s in 0..10 {
            let r = store
                .ingest(inbound(&format!("c{s}"), &format!("m-{s}"), "hello"))
                .await
                .unwrap();
            received.push((
                store.conversation(r.conversation_id).await.unwrap(),
                r.message_id,
            ));
        }
        // A person takes conversation 3 while the bot is thinking.
        store
            .request_handoff(received[3].0.id, manual_handoff())
            .await
            .unwrap();
        let answers = received.iter().map(|(conversation, inbound)| {
            let store = store.clone();
            let replies = ["first", "second"]
                .into_iter()
                .map(|t| {
                    OutboundMessage::text(AuthorKind::Bot, None, MessageText::parse(t).unwrap())
                })
                .collect();
            async move {
                store
                    .complete_inbound(conversation, *inbound, replies)
                    .await
                    .unwrap()
            }
        });
        let stored = futures_util::future::join_all(answers).await;
        for (i, replies) in stored.iter().enumerate() {
            assert_eq!(
                replies.len(),
                if i == 3 { 0 } else { 2 },
                "conversation {i}"
            );
        }
        assert!(store.unprocessed_inbound(100).await.unwrap().is_empty());
        let texts: Vec<String> = store
            .messages(received[5].0.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["hello", "first", "second"]);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM messages WHERE author_kind = 'bot'"
            )
            .await,
            18
        );
    }

    #[tokio::test]
    async fn receipts_move_a_sent_message_forward_and_never_back() {
        let (_dir, store) = open().await;
        let mut m = inbound("wa-1", "wamid.IN", "hello");
        m.channel = ChannelKind::WhatsApp;
        m.sender.identity = Identity::channel(ChannelKind::WhatsApp, "4915112345678").unwrap();
        let receipt = store.ingest(m).await.unwrap();
        let conversation = store.conversation(receipt.conversation_id).await.unwrap();
        let reply = OutboundMessage::text(AuthorKind::Bot, None, MessageText::parse("hi").unwrap());
        let stored = store
            .complete_inbound(&conversation, receipt.message_id, vec![reply])
            .await
            .unwrap();
        assert_eq!(stored[0].delivery_status, DeliveryStatus::Pending);
        let later = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000);
        store
            .record_deliveries(vec![(
                stored[0].id,
                DeliveryOutcome::RetryAt(later, "HTTP 503".into()),
            )])
            .await
            .unwrap();
        let waiting = store.message(stored[0].id).await.unwrap();
        assert_eq!(
            (waiting.delivery_status, waiting.delivery_error.as_deref()),
            (DeliveryStatus::Pending, Some("HTTP 503")),
            "the agent sees why it is still pending"
        );
        store
            .record_deliveries(vec![(
                stored[0].id,
                DeliveryOutcome::Sent(Some("wamid.OUT".into())),
            )])
            .await
            .unwrap();
        for (receipt, expect, changed) in [
            (DeliveryStatus::Read, DeliveryStatus::Read, true),
            (DeliveryStatus::Delivered, DeliveryStatus::Read, false),
            (DeliveryStatus::Failed, DeliveryStatus::Failed, true),
        ] {
            let matched = store
                .apply_receipt(
                    ChannelKind::WhatsApp,
                    "wamid.OUT",
                    receipt,
                    Some("boom".into()),
                )
                .await
                .unwrap();
            assert_eq!(matched, changed, "{receipt:?}");
            assert_eq!(
                store.message(stored[0].id).await.unwrap().delivery_status,
                expect
            );
        }
        assert!(
            !store
                .apply_receipt(
                    ChannelKind::WhatsApp,
                    "wamid.UNKNOWN",
                    DeliveryStatus::Read,
                    None
                )
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_edit_changes_only_the_authors_message_and_keeps_the_old_text() {
        let (_dir, store) = open().await;
        let receipt = store.ingest(inbound("ed", "m-1", "helo")).await.unwrap();
        let author = Identity::channel(ChannelKind::Api, "ed").unwrap();
        let stranger = Identity::channel(ChannelKind::Api, "someone-else").unwrap();
        let text = |t: &str| MessageText::parse(t).unwrap();
        assert!(
            !store
                .edit_inbound(ChannelKind::Api, "m-1", &stranger, text("hacked"))
                .await
                .unwrap()
        );
        assert!(
            store
                .edit_inbound(ChannelKind::Api, "m-1", &author, text("hello"))
                .await
                .unwrap()
        );
        assert_eq!(
            store.message(receipt.message_id).await.unwrap().text,
            "hello"
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM message_edits WHERE old_text = 'helo'"
            )
            .await,
            1
        );
    }

    /// Appends outbox rows as given: valid events, or payloads a hand-edited database holds.
    async fn append_outbox(store: &SqliteStore, payloads: Vec<String>) {
        store
            .write_one(move |tx| {
                Box::pin(async move {
                    for (i, payload) in payloads.into_iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO event_outbox (event_id, payload, created_at)
                             VALUES (lower(hex(randomblob(16))) || ?, ?, 0)",
                        )
                        .bind(i as i64)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
            .unwrap();
    }

    fn an_event() -> HandoffEvent {
        let now = Timestamp::now();
        HandoffEvent::new(
            HandoffEventKind::Requested,
            HandoffId::new(),
            ConversationId::new(),
            ChannelKind::Api,
            HandoffReason::CustomerRequest,
            Priority::Normal,
            None,
            now,
            now,
        )
    }

    /// Positions and events (or the error) of a batch, comparable.
    fn summary(batch: &[OutboxEntry]) -> Vec<(i64, Result<uuid::Uuid, String>)> {
        batch
            .iter()
            .map(|e| {
                (
                    e.seq,
                    e.event.as_ref().map(|e| e.event_id).map_err(Clone::clone),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_outbox_reads_in_one_row_as_it_reads_row_by_row_broken_payloads_included() {
        let (_dir, store) = open().await;
        let events: Vec<HandoffEvent> = (0..6).map(|_| an_event()).collect();
        // Today's form, and one in the object form an earlier version wrote.
        let mut payloads: Vec<String> = events.iter().map(encode_outbox_payload).collect();
        payloads[4] = serde_json::to_string(&events[4]).unwrap();
        payloads.insert(2, r#"{"kind": "from the future"}"#.into());
        append_outbox(&store, payloads).await;

        let whole = store.outbox_batch(0, 100).await.unwrap();
        assert_eq!(
            summary(&whole),
            summary(&store.outbox_batch_by_row(0, 100).await.unwrap())
        );
        assert_eq!(whole.len(), 7);
        assert!(
            whole[2]
                .event
                .as_ref()
                .unwrap_err()
                .contains("does not parse")
        );
        assert_eq!(whole[3].event.as_ref().unwrap(), &events[2]);
        assert_eq!(whole[5].event.as_ref().unwrap(), &events[4]);

        let page = store.outbox_batch(whole[1].seq, 3).await.unwrap();
        assert_eq!(summary(&page), summary(&whole[2..5]));
        assert!(
            store
                .outbox_batch(whole[6].seq, 3)
                .await
                .unwrap()
                .is_empty()
        );

        // A payload holding the separator the one-row read joins with: row by row instead.
        append_outbox(&store, vec!["{\"a\x1eb\": 1}".into()]).await;
        let all = store.outbox_batch(0, 100).await.unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(summary(&all[..7]), summary(&whole));
        assert!(all[7].event.is_err());
    }

    #[tokio::test]
    async fn containment_reads_the_periods_inbound_messages_by_time_not_every_message() {
        let (_dir, store) = open().await;
        // A constant's text with a prefix: nothing from outside goes in.
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {CONVERSATION_ACTIVITY}"
        )))
        .bind(0i64)
        .bind(1i64)
        .bind(None::<String>)
        .fetch_all(&store.read)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        assert!(
            plan.iter().any(|step| step.starts_with("SEARCH m USING")
                && step.contains("INDEX messages_inbound_by_time (created_at>? AND created_at<?)")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn acknowledging_deletes_exactly_the_positions_given() {
        let (_dir, store) = open().await;
        let payloads = (0..10)
            .map(|_| encode_outbox_payload(&an_event()))
            .collect();
        append_outbox(&store, payloads).await;
        let seqs: Vec<i64> = store
            .outbox_batch(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        // Out of order, repeated, with gaps: runs 0–2, 4, 6–7 of the ten.
        let acked = vec![
            seqs[7], seqs[1], seqs[0], seqs[2], seqs[6], seqs[4], seqs[1],
        ];
        store.outbox_ack(acked).await.unwrap();
        let left: Vec<i64> = store
            .outbox_batch(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, vec![seqs[3], seqs[5], seqs[8], seqs[9]]);
        assert_eq!(store.outbox_len().await.unwrap(), 4);
        store.outbox_ack(vec![]).await.unwrap();

        // Positions are never reused, even once the outbox is empty (dead letters are keyed
        // by them).
        store.outbox_ack(left).await.unwrap();
        append_outbox(&store, vec!["{}".into()]).await;
        let next = store.outbox_batch(0, 100).await.unwrap();
        assert_eq!(next.len(), 1);
        assert!(next[0].seq > seqs[9]);
    }

    #[tokio::test]
    async fn acknowledging_all_the_outbox_holds_empties_it_and_keeps_the_counter() {
        let (_dir, store) = open().await;
        let payloads = (0..10)
            .map(|_| encode_outbox_payload(&an_event()))
            .collect();
        append_outbox(&store, payloads).await;
        let seqs: Vec<i64> = store
            .outbox_batch(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        // One run with more events behind it: only the run goes.
        store.outbox_ack(seqs[..4].to_vec()).await.unwrap();
        assert_eq!(store.outbox_len().await.unwrap(), 6);
        // One run holding everything left, and more (positions already gone).
        store.outbox_ack(seqs[2..].to_vec()).await.unwrap();
        assert_eq!(store.outbox_len().await.unwrap(), 0);
        store.outbox_ack(seqs[..1].to_vec()).await.unwrap();
        append_outbox(&store, vec!["{}".into()]).await;
        let next = store.outbox_batch(0, 100).await.unwrap();
        assert!(next[0].seq > seqs[9], "positions are never reused");
    }

    #[test]
    fn positions_group_into_runs_of_consecutive_ones() {
        assert_eq!(
            consecutive_runs(vec![9, 3, 4, 5, 1, 7, 8, 3]),
            vec![(1, 1), (3, 5), (7, 9)]
        );
        assert_eq!(consecutive_runs(vec![]), vec![]);
        assert_eq!(
            ack_pieces(vec![(1, 3), (5, 12), (20, 20)], 4),
            vec![vec![(1, 3), (5, 5)], vec![(6, 9)], vec![(10, 12), (20, 20)]]
        );
        assert!(ack_pieces(vec![], 4).is_empty());
        assert_eq!(split_outbox_batch("1,2", "{}", 2).map(|v| v.len()), None);
        assert_eq!(
            split_outbox_batch("1", "{}\x1e{}", 1).map(|v| v.len()),
            None
        );
        let entries = split_outbox_batch("7,3,5", "{}\x1etrue\x1e1", 3).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 5, 7],
            "in outbox order, each with its own payload"
        );
        let why = |i: usize| entries[i].event.as_ref().unwrap_err().clone();
        assert!(why(0).contains("boolean"), "{}", why(0));
        assert!(why(1).contains("integer"), "{}", why(1));
        assert!(why(2).contains("missing field"), "{}", why(2));
    }
}
