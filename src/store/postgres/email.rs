//! The email channel's storage: threading an inbound mail into its conversation, keeping the
//! original and its files, and what outgoing mail needs to thread in the customer's client.

use sqlx::{PgConnection, Row};

use super::{insert_conversation, parse_col, resolve_customer, set_conversation_status};
use crate::model::{
    ChannelKind, ConversationId, ConversationStatus, CustomerId, EmailAddress, MessageId,
    ReopenPolicy, ThreadMatch, Timestamp,
};
use crate::store::{EmailReceipt, EmailThread, InboundEmail, IngestReceipt, StoreError};

/// Threads and stores one inbound mail. Runs inside the caller's transaction: everything or
/// nothing.
pub(super) async fn ingest(
    conn: &mut PgConnection,
    e: &InboundEmail,
    new_token: &str,
    now: Timestamp,
) -> Result<EmailReceipt, StoreError> {
    let m = &e.message;
    if let Some(external) = &m.external_id
        && let Some(row) = sqlx::query(
            "SELECT id, conversation_id, thread_match FROM messages
             WHERE channel = 'email' AND external_id = $1 AND direction = 'in'",
        )
        .bind(external)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(EmailReceipt {
            receipt: IngestReceipt {
                conversation_id: parse_col(&row, "conversation_id")?,
                message_id: parse_col(&row, "id")?,
                duplicate: true,
            },
            thread_match: stored_match(row.try_get("thread_match")?),
            needs_processing: false,
        });
    }

    let customer = resolve_customer(conn, &m.sender, now).await?;
    let found = find_conversation(conn, e, customer, now).await?;
    let automated = e.automated.is_some();
    let (conversation, thread_match) = match found {
        Some((id, how, status)) if status == ConversationStatus::Resolved && !automated => {
            match e.reopen {
                ReopenPolicy::Reopen => {
                    set_conversation_status(
                        conn,
                        id,
                        ConversationStatus::Resolved,
                        ConversationStatus::Bot,
                        now,
                    )
                    .await?;
                    (id, how)
                }
                ReopenPolicy::New => {
                    let new = new_conversation(conn, e, customer, new_token, now).await?;
                    sqlx::query(
                        "UPDATE conversations SET previous_conversation_id = $1 WHERE id = $2",
                    )
                    .bind(id.to_string())
                    .bind(new.to_string())
                    .execute(&mut *conn)
                    .await?;
                    (new, how)
                }
            }
        }
        Some((id, how, _)) => (id, how),
        None => {
            let id = new_conversation(conn, e, customer, new_token, now).await?;
            if automated {
                // A bounce or auto-reply that belongs nowhere is kept for the record, but is
                // nobody's open work.
                sqlx::query("UPDATE conversations SET status = 'resolved' WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            (id, ThreadMatch::New)
        }
    };

    let message_id = MessageId::new();
    let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, channel, direction, author_kind, text, html, attachments,
                               external_id, delivery_status, needs_processing, thread_match, automated, created_at)
         VALUES ($1, $2, 'email', 'in', 'customer', $3, $4, $5, $6, 'received', $7, $8, $9, $10)",
    )
    .bind(message_id.to_string())
    .bind(conversation.to_string())
    .bind(m.text.as_str())
    .bind(m.html.as_deref())
    .bind(&attachments)
    .bind(m.external_id.as_deref())
    .bind(!automated)
    .bind(thread_match.as_str())
    .bind(e.automated.map(|a| a.as_str()))
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    if let Some(header) = &m.external_id {
        sqlx::query(
            "INSERT INTO email_message_ids (message_id, conversation_id, message_row, direction, address, created_at)
             VALUES ($1, $2, $3, 'in', $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(header)
        .bind(conversation.to_string())
        .bind(message_id.to_string())
        .bind(m.sender.email.as_ref().map(|a| a.as_str()))
        .bind(now.as_millis())
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO email_originals (message_row, subject, full_text, raw) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id.to_string())
    .bind(e.subject.as_deref())
    .bind(e.full_text.as_deref())
    .bind(&e.raw)
    .execute(&mut *conn)
    .await?;
    for (file, meta) in e.files.iter().zip(&m.attachments) {
        let id = meta
            .url
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO attachment_blobs (id, message_row, name, content_type, content_id, inline, size, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(message_id.to_string())
        .bind(file.name.as_deref())
        .bind(&file.content_type)
        .bind(file.content_id.as_deref())
        .bind(file.inline)
        .bind(file.data.len() as i64)
        .bind(&file.data)
        .execute(&mut *conn)
        .await?;
    }
    Ok(EmailReceipt {
        receipt: IngestReceipt {
            conversation_id: conversation,
            message_id,
            duplicate: false,
        },
        thread_match,
        needs_processing: !automated,
    })
}

fn stored_match(s: Option<String>) -> ThreadMatch {
    match s.as_deref() {
        Some("reply_address") => ThreadMatch::ReplyAddress,
        Some("in_reply_to") => ThreadMatch::InReplyTo,
        Some("references") => ThreadMatch::References,
        Some("subject") => ThreadMatch::Subject,
        _ => ThreadMatch::New,
    }
}

/// The conversation a mail belongs to, by the strongest signal that matches.
async fn find_conversation(
    conn: &mut PgConnection,
    e: &InboundEmail,
    customer: CustomerId,
    now: Timestamp,
) -> Result<Option<(ConversationId, ThreadMatch, ConversationStatus)>, StoreError> {
    let s = &e.signals;
    // Any channel: an agent may have answered a chat by email, and the answer to that mail
    // belongs in the chat's conversation. A token is random and names one conversation.
    for token in &s.reply_tokens {
        let row = sqlx::query("SELECT id, status FROM conversations WHERE reply_token = $1")
            .bind(token)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(Some((
                parse_col(&row, "id")?,
                ThreadMatch::ReplyAddress,
                parse_col(&row, "status")?,
            )));
        }
    }
    let by_header = s
        .in_reply_to
        .iter()
        .map(|id| (id, ThreadMatch::InReplyTo))
        .chain(s.references.iter().map(|id| (id, ThreadMatch::References)));
    for (id, how) in by_header {
        let row = sqlx::query(
            "SELECT c.id, c.status FROM email_message_ids e JOIN conversations c ON c.id = e.conversation_id
             WHERE e.message_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok(Some((
                parse_col(&row, "id")?,
                how,
                parse_col(&row, "status")?,
            )));
        }
    }
    // The weakest signal: only this customer's own conversations, never someone else's with
    // the same subject; only open ones, only recent ones.
    if let Some(key) = &s.subject_key {
        let row = sqlx::query(
            "SELECT id, status FROM conversations
             WHERE customer_id = $1 AND channel = 'email' AND subject_key = $2 AND status != 'resolved'
               AND updated_at >= $3
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(customer.to_string())
        .bind(key)
        .bind(now.as_millis() - e.subject_window_ms)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok(Some((
                parse_col(&row, "id")?,
                ThreadMatch::Subject,
                parse_col(&row, "status")?,
            )));
        }
    }
    Ok(None)
}

async fn new_conversation(
    conn: &mut PgConnection,
    e: &InboundEmail,
    customer: CustomerId,
    token: &str,
    now: Timestamp,
) -> Result<ConversationId, StoreError> {
    let id = insert_conversation(conn, ChannelKind::Email, customer, None, now).await?;
    sqlx::query(
        "UPDATE conversations SET reply_token = $1, subject = $2, subject_key = $3 WHERE id = $4",
    )
    .bind(token)
    .bind(e.subject.as_deref())
    .bind(e.signals.subject_key.as_deref())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// What an outgoing mail needs; gives the conversation a reply token if it has none (a
/// conversation that moved to email from elsewhere, or one from before tokens existed).
pub(super) async fn thread(
    conn: &mut PgConnection,
    conversation: ConversationId,
    new_token: &str,
) -> Result<EmailThread, StoreError> {
    let row = sqlx::query(
        "SELECT c.subject, c.reply_token, c.customer_id, cu.display_name,
                (SELECT address FROM email_message_ids
                 WHERE conversation_id = c.id AND direction = 'in' AND address IS NOT NULL
                 ORDER BY created_at DESC LIMIT 1) AS last_sender,
                (SELECT value FROM identities WHERE customer_id = c.customer_id AND kind = 'email'
                 ORDER BY created_at LIMIT 1) AS customer_email
         FROM conversations c JOIN customers cu ON cu.id = c.customer_id
         WHERE c.id = $1",
    )
    .bind(conversation.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("conversation"))?;
    let to: Option<String> = row
        .try_get::<Option<String>, _>("last_sender")?
        .or(row.try_get("customer_email")?);
    let to = to.ok_or_else(|| StoreError::Conflict("the customer has no email address".into()))?;
    let to = EmailAddress::parse(&to).map_err(super::corrupt)?;
    let reply_token = match row.try_get::<Option<String>, _>("reply_token")? {
        Some(t) => t,
        // The token stored, whoever stored it: another instance may have given the
        // conversation one in the meantime, and a mail must carry the one that threads.
        None => sqlx::query(
            "UPDATE conversations SET reply_token = coalesce(reply_token, $1) WHERE id = $2
             RETURNING reply_token",
        )
        .bind(new_token)
        .bind(conversation.to_string())
        .fetch_one(&mut *conn)
        .await?
        .try_get("reply_token")?,
    };
    let ids = sqlx::query(
        "SELECT message_id, direction FROM email_message_ids WHERE conversation_id = $1
         ORDER BY created_at, message_id",
    )
    .bind(conversation.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut message_ids = Vec::with_capacity(ids.len());
    let mut in_reply_to = None;
    for r in &ids {
        let id: String = r.try_get("message_id")?;
        if r.try_get::<String, _>("direction")? == "in" {
            in_reply_to = Some(id.clone());
        }
        message_ids.push(id);
    }
    Ok(EmailThread {
        to,
        to_name: row.try_get("display_name")?,
        subject: row.try_get("subject")?,
        reply_token,
        message_ids,
        in_reply_to,
    })
}

/// Remembers a sent mail's Message-ID (idempotent: retries send the same id).
pub(super) async fn remember_sent(
    conn: &mut PgConnection,
    message: MessageId,
    conversation: ConversationId,
    header: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO email_message_ids (message_id, conversation_id, message_row, direction, created_at)
         VALUES ($1, $2, $3, 'out', $4) ON CONFLICT DO NOTHING",
    )
    .bind(header)
    .bind(conversation.to_string())
    .bind(message.to_string())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
