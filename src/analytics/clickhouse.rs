//! The ClickHouse connection, its migrations and the event row.

use ::clickhouse::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::model::HandoffEvent;

/// Migrations, applied in order and recorded in `schema_migrations`. Never edit one that has
/// landed; add the next.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_handoff_events",
        include_str!("../../migrations/clickhouse/0001_handoff_events.sql"),
    ),
    (
        "0002_team_and_detail",
        include_str!("../../migrations/clickhouse/0002_team_and_detail.sql"),
    ),
];

/// What went wrong talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// Unreachable, timed out, or answered with an error.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    /// The store failed (reports that also read it, such as containment and the live view).
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The database name is not a plain identifier.
    #[error("invalid ClickHouse database name {0:?}")]
    InvalidDatabase(String),
}

/// A handle on Baton's ClickHouse database. Cheap to clone.
#[derive(Clone)]
pub struct ClickHouse {
    server: Client,
    db: Client,
    database: String,
}

impl ClickHouse {
    /// A client for `database` on the server at `url`. Connects lazily.
    pub fn new(
        url: &str,
        database: &str,
        user: &str,
        password: Option<&SecretString>,
    ) -> Result<Self, AnalyticsError> {
        if database.is_empty()
            || !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(AnalyticsError::InvalidDatabase(database.to_owned()));
        }
        let mut server = Client::default()
            .with_url(url)
            .with_user(user)
            // ClickHouse 18.16 rejects the schema query the crate makes to validate rows.
            .with_validation(false);
        if let Some(p) = password {
            server = server.with_password(p.expose_secret());
        }
        let db = server.clone().with_database(database);
        Ok(Self {
            server,
            db,
            database: database.to_owned(),
        })
    }

    /// The client bound to Baton's database.
    pub fn client(&self) -> &Client {
        &self.db
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Creates the database and applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<(), AnalyticsError> {
        // One migration run at a time in this process (the shipper's start and a caller's may
        // overlap): 18.16 has no `ADD COLUMN IF NOT EXISTS`, so a second concurrent run would
        // fail on a column the first just added.
        static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = MIGRATING.lock().await;
        self.server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database))
            .execute()
            .await?;
        self.db
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime)
                 ENGINE = MergeTree() ORDER BY name",
            )
            .execute()
            .await?;
        let applied: Vec<String> = self
            .db
            .query("SELECT name FROM schema_migrations")
            .fetch_all()
            .await?;
        for (name, sql) in MIGRATIONS {
            if applied.iter().any(|a| a == name) {
                continue;
            }
            for statement in split_statements(sql) {
                self.db.query(&statement).execute().await?;
            }
            self.db
                .query("INSERT INTO schema_migrations (name, applied_at) VALUES (?, now())")
                .bind(*name)
                .execute()
                .await?;
            tracing::info!(migration = name, "applied ClickHouse migration");
        }
        Ok(())
    }

    /// Inserts events in one INSERT.
    pub async fn insert_events(
        &self,
        events: &[(i64, HandoffEvent)],
    ) -> Result<(), AnalyticsError> {
        let mut insert = self.db.insert::<EventRow>("handoff_events").await?;
        for (seq, e) in events {
            insert.write(&EventRow::from_event(*seq, e)).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

/// Splits a migration file into statements: `;` at a line end ends one; `--` comments go.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let line = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// One row of `handoff_events`, in column order.
#[derive(Debug, Clone, PartialEq, ::clickhouse::Row, Serialize, Deserialize)]
pub struct EventRow {
    /// Unique event id (UUID text).
    pub event_id: String,
    /// `requested`, `queued`, `assigned`, ...
    pub event_type: String,
    /// The ticket.
    pub handoff_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The channel's name.
    pub channel: String,
    /// The handoff reason.
    pub reason: String,
    /// The priority.
    pub priority: String,
    /// The agent, or empty.
    pub agent_id: String,
    /// Seconds since the epoch.
    pub occurred_at: u32,
    /// Milliseconds since the epoch.
    pub occurred_at_ms: u64,
    /// Milliseconds since the handoff was requested.
    pub wait_ms: u64,
    /// Position in the gateway's outbox.
    pub seq: u64,
    /// The team (queue), or empty for the general queue.
    pub team: String,
    /// The rule that fired, where a transfer went, how an overflow moved the ticket.
    pub detail: String,
}

impl EventRow {
    /// The row for an event at outbox position `seq`.
    pub fn from_event(seq: i64, e: &HandoffEvent) -> Self {
        Self {
            event_id: e.event_id.to_string(),
            event_type: e.kind.as_str().to_owned(),
            handoff_id: e.handoff_id.to_string(),
            conversation_id: e.conversation_id.to_string(),
            channel: e.channel.as_str().to_owned(),
            reason: e.reason.as_str().to_owned(),
            priority: e.priority.as_str().to_owned(),
            agent_id: e.agent_id.map(|a| a.to_string()).unwrap_or_default(),
            occurred_at: crate::model::Timestamp::from_millis(e.occurred_at_ms)
                .as_unix_seconds_u32(),
            occurred_at_ms: e.occurred_at_ms.max(0) as u64,
            wait_ms: e.wait_ms.max(0) as u64,
            seq: seq.max(0) as u64,
            team: e.team.clone(),
            detail: e.detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements_without_comments() {
        let parts =
            split_statements("-- a comment; here\nCREATE TABLE a (x UInt8);\n\nSELECT 1;\n");
        assert_eq!(
            parts,
            vec!["CREATE TABLE a (x UInt8)".to_owned(), "SELECT 1".to_owned()]
        );
    }

    #[test]
    fn database_names_must_be_plain_identifiers() {
        assert!(ClickHouse::new("http://x", "baton; DROP", "default", None).is_err());
        assert!(ClickHouse::new("http://x", "baton_test_1", "default", None).is_ok());
    }
}
