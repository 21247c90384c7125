//! The two writes every bot-answered message makes, merged across a group commit.
//!
//! Each statement is a round trip between the writer and SQLite's worker thread, and on these
//! virtual machines the thread wake-ups of a round trip cost far more than the row it writes.
//! So the writer runs all fast-path ingests of a batch in one statement and all bot answers in
//! another, instead of one (or three) per message. An item the merged statement could not take
//! (an unknown sender, a redelivery, a statement error) falls back to its own general job, run
//! afterwards in the same transaction, so merging never changes what gets stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::oneshot;

use super::writer::{Job, WriteJob};
use super::{ingest_one, parse_col};
use crate::model::{ConversationId, Message, MessageId, Timestamp};
use crate::store::{InboundMessage, IngestReceipt, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An inbound message from a sender who may be known: stored by the batch's merged insert when
/// the sender has an open conversation on the channel, by [`ingest_one`] otherwise.
pub struct Ingest {
    message: Arc<InboundMessage>,
    id: MessageId,
    reply: Reply<IngestReceipt>,
}

impl Ingest {
    /// The item and the receiver of its receipt (sent after COMMIT).
    pub fn new(
        message: Arc<InboundMessage>,
    ) -> (Self, oneshot::Receiver<Result<IngestReceipt, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Self {
                message,
                id: MessageId::new(),
                reply,
            },
            rx,
        )
    }

    pub fn fallback(self) -> Box<dyn WriteJob> {
        let m = self.message;
        Job::with_reply(
            true,
            move |tx: &mut SqliteConnection| -> BoxFuture<'_, Result<IngestReceipt, StoreError>> {
                Box::pin(async move { ingest_one(tx, &m, Timestamp::now()).await })
            },
            self.reply,
        )
    }
}

/// Stores every item whose sender has an open conversation on the message's channel, in one
/// statement. Returns the jobs still to run (fallbacks) and those already done.
pub async fn ingest_all(
    conn: &mut SqliteConnection,
    items: Vec<Ingest>,
) -> (Vec<Box<dyn WriteJob>>, Vec<Box<dyn WriteJob>>) {
    if items.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let now = Timestamp::now();
    let rows: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            let m = &i.message;
            serde_json::json!({
                "id": i.id,
                "channel": m.channel.as_str(),
                "kind": m.sender.identity.kind.as_str(),
                "sender": m.sender.identity.value,
                "text": m.text.as_str(),
                "html": m.html,
                "attachments": serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()),
                "external_id": m.external_id,
            })
        })
        .collect();
    // OR IGNORE: two deliveries of one message in the same batch both pass NOT EXISTS (SQLite
    // reads the SELECT before inserting); the unique index turns the second away, and its
    // fallback then finds the first and answers `duplicate`.
    let inserted = sqlx::query(
        "WITH j AS MATERIALIZED (
             SELECT key, ?1 ->> (fullkey || '.id') AS id, ?1 ->> (fullkey || '.channel') AS channel,
                    ?1 ->> (fullkey || '.kind') AS kind, ?1 ->> (fullkey || '.sender') AS sender,
                    ?1 ->> (fullkey || '.text') AS text, ?1 ->> (fullkey || '.html') AS html,
                    ?1 ->> (fullkey || '.attachments') AS attachments,
                    ?1 ->> (fullkey || '.external_id') AS external_id
             FROM json_each(?1))
         INSERT OR IGNORE INTO messages (id, conversation_id, channel, direction, author_kind, text, html,
                                         attachments, external_id, delivery_status, needs_processing, created_at)
         SELECT j.id, conv.id, j.channel, 'in', 'customer', j.text, j.html, j.attachments, j.external_id,
                'received', 1, ?2
         FROM j
         JOIN identities i ON i.kind = j.kind AND i.value = j.sender
         JOIN conversations conv ON conv.id = (
             SELECT id FROM conversations
             WHERE customer_id = i.customer_id AND channel = j.channel AND status != 'resolved'
             ORDER BY created_at DESC LIMIT 1)
         WHERE NOT EXISTS (SELECT 1 FROM messages
                           WHERE channel = j.channel AND external_id = j.external_id AND direction = 'in')
         ORDER BY j.key
         RETURNING id, conversation_id",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(now.as_millis())
    .fetch_all(&mut *conn)
    .await;
    let stored: HashMap<MessageId, ConversationId> = match inserted {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                Some((
                    parse_col(r, "id").ok()?,
                    parse_col(r, "conversation_id").ok()?,
                ))
            })
            .collect(),
        Err(e) => {
            // SQLite undid the statement; every item takes the general path and its own outcome.
            tracing::warn!(error = %e, "merged ingest failed; storing one by one");
            Default::default()
        }
    };
    let (mut pending, mut done) = (Vec::new(), Vec::new());
    for item in items {
        match stored.get(&item.id) {
            Some(&conversation_id) => done.push(Job::done(
                Ok(IngestReceipt {
                    conversation_id,
                    message_id: item.id,
                    duplicate: false,
                }),
                item.reply,
            )),
            None => pending.push(item.fallback()),
        }
    }
    (pending, done)
}

/// The bot's answer to one inbound message: its replies (stored only while the bot still owns
/// the conversation), after which the inbound message counts as handled.
pub struct Complete {
    conversation: ConversationId,
    inbound: MessageId,
    replies: Vec<Message>,
    reply: Reply<Vec<Message>>,
}

impl Complete {
    /// The item and the receiver of the replies that were stored (none if a person took over).
    pub fn new(
        conversation: ConversationId,
        inbound: MessageId,
        replies: Vec<Message>,
    ) -> (Self, oneshot::Receiver<Result<Vec<Message>, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Self {
                conversation,
                inbound,
                replies,
                reply,
            },
            rx,
        )
    }

    pub fn fallback(self) -> Box<dyn WriteJob> {
        let Self {
            conversation,
            inbound,
            replies,
            reply,
        } = self;
        Job::with_reply(
            true,
            move |tx: &mut SqliteConnection| -> BoxFuture<'_, Result<Vec<Message>, StoreError>> {
                Box::pin(async move {
                    let stored = store_answers(tx, &[(conversation, inbound, &replies)]).await?;
                    Ok(if answered(&replies, &stored) {
                        replies
                    } else {
                        Vec::new()
                    })
                })
            },
            reply,
        )
    }
}

/// Whether every reply was stored (all of a conversation's replies are, or none: one statement
/// saw one status). An answer without replies stored nothing.
fn answered(replies: &[Message], stored: &HashSet<MessageId>) -> bool {
    !replies.is_empty() && replies.iter().all(|m| stored.contains(&m.id))
}

/// In one round trip: inserts the replies whose conversation the bot still owns (if a person
/// took over while the bot was thinking, its answer is dropped) and marks every inbound message
/// handled. Both or neither: they run inside a savepoint. Returns the ids of the replies stored.
async fn store_answers(
    conn: &mut SqliteConnection,
    items: &[(ConversationId, MessageId, &Vec<Message>)],
) -> Result<HashSet<MessageId>, StoreError> {
    let rows: Vec<serde_json::Value> = items
        .iter()
        .flat_map(|(conversation, inbound, replies)| {
            replies.iter().map(move |m| {
                serde_json::json!({
                    "id": m.id, "conversation_id": conversation, "in_reply_to": inbound,
                    "author_kind": m.author_kind.as_str(), "agent_id": m.agent_id,
                    "text": m.text, "html": m.html, "status": m.delivery_status.as_str(),
                    "created_at": m.created_at.as_millis(),
                })
            })
        })
        .collect();
    let inbound: Vec<MessageId> = items.iter().map(|(_, inbound, _)| *inbound).collect();
    let inbound =
        serde_json::to_string(&inbound).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let result = sqlx::query(
        "SAVEPOINT answers;
         WITH r AS MATERIALIZED (
             SELECT key, ?1 ->> (fullkey || '.id') AS id, ?1 ->> (fullkey || '.conversation_id') AS conversation_id,
                    ?1 ->> (fullkey || '.author_kind') AS author_kind, ?1 ->> (fullkey || '.agent_id') AS agent_id,
                    ?1 ->> (fullkey || '.text') AS text, ?1 ->> (fullkey || '.html') AS html,
                    ?1 ->> (fullkey || '.status') AS status, ?1 ->> (fullkey || '.created_at') AS created_at,
                    ?1 ->> (fullkey || '.in_reply_to') AS in_reply_to
             FROM json_each(?1))
         INSERT INTO messages (id, conversation_id, channel, direction, author_kind, agent_id, text,
                               html, delivery_status, next_attempt_at, in_reply_to, created_at)
         SELECT r.id, c.id, c.channel, 'out', r.author_kind, r.agent_id, r.text, r.html, r.status,
                r.created_at, r.in_reply_to, r.created_at
         FROM r
         JOIN conversations c ON c.id = r.conversation_id AND c.status = 'bot'
         ORDER BY r.key
         RETURNING id;
         UPDATE messages SET needs_processing = 0
         WHERE id IN (SELECT value FROM json_each(?2)) AND needs_processing = 1;
         RELEASE answers;",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(inbound)
    .fetch_all(&mut *conn)
    .await;
    match result {
        Ok(rows) => rows.iter().map(|r| parse_col(r, "id")).collect(),
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK TO answers; RELEASE answers")
                .execute(&mut *conn)
                .await;
            Err(e.into())
        }
    }
}

/// Stores the answers of every item in one round trip. Returns the jobs still to run (all of
/// them, as fallbacks, if the merged statements failed) and those done.
pub async fn complete_all(
    conn: &mut SqliteConnection,
    items: Vec<Complete>,
) -> (Vec<Box<dyn WriteJob>>, Vec<Box<dyn WriteJob>>) {
    if items.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let view: Vec<_> = items
        .iter()
        .map(|i| (i.conversation, i.inbound, &i.replies))
        .collect();
    match store_answers(conn, &view).await {
        Ok(stored) => {
            let done = items
                .into_iter()
                .map(|i| {
                    let replies = if answered(&i.replies, &stored) {
                        i.replies
                    } else {
                        Vec::new()
                    };
                    Job::done(Ok(replies), i.reply)
                })
                .collect();
            (Vec::new(), done)
        }
        Err(e) => {
            tracing::warn!(error = %e, "merged bot answers failed; storing one by one");
            (
                items.into_iter().map(Complete::fallback).collect(),
                Vec::new(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    fn inbound(sender: &str, external_id: &str) -> Arc<InboundMessage> {
        Arc::new(crate::store::sqlite::tests::inbound(
            sender,
            external_id,
            "hello",
        ))
    }

    #[tokio::test]
    async fn known_senders_are_stored_by_one_statement_and_the_rest_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        for s in 0..5 {
            Store::ingest(
                &store,
                (*inbound(&format!("k{s}"), &format!("first-{s}"))).clone(),
            )
            .await
            .unwrap();
        }
        let mut items: Vec<Ingest> = (0..5)
            .map(|s| Ingest::new(inbound(&format!("k{s}"), &format!("second-{s}"))).0)
            .collect();
        items.push(Ingest::new(inbound("stranger", "x-1")).0);
        items.push(Ingest::new(inbound("k0", "first-0")).0);
        let mut conn = store.write.acquire().await.unwrap();
        let (pending, done) = ingest_all(&mut conn, items).await;
        assert_eq!(done.len(), 5, "the five known senders' new messages");
        assert_eq!(pending.len(), 2, "the unknown sender and the redelivery");
    }
}
