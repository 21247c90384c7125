//! The ClickHouse connection, its migrations and the event row.

use ::clickhouse::Client;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

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
    (
        "0003_handoff_summary",
        include_str!("../../migrations/clickhouse/0003_handoff_summary.sql"),
    ),
    (
        "0004_handoff_rollup",
        include_str!("../../migrations/clickhouse/0004_handoff_rollup.sql"),
    ),
    (
        "0005_rollup_histograms",
        include_str!("../../migrations/clickhouse/0005_rollup_histograms.sql"),
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

impl AnalyticsError {
    /// Whether ClickHouse refused the data itself (a value it cannot parse, a check that
    /// failed): sending the same rows again fails again. Anything else (unreachable, timed
    /// out, overloaded, a missing table, wrong credentials) may pass later and is retried.
    ///
    /// Decided on ClickHouse's error code, which every version puts in the text ("Code: 27,
    /// e.displayText() = ..." on 18.16, "Code: 27. DB::Exception: ..." today); the HTTP
    /// status is no guide, 18.16 answers 500 for most of these. Codes that also mean a schema
    /// out of step with Baton (TYPE_MISMATCH, reading past the end) are left out on purpose:
    /// they would fail every row, and every event would end up in the dead letters.
    pub fn is_bad_data(&self) -> bool {
        use ::clickhouse::error::Error as E;
        let Self::ClickHouse(e) = self else {
            return false;
        };
        match e {
            // The row could not be serialized: it will not serialize next time either.
            E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) => true,
            E::BadResponse(text) => match exception_code(text) {
                Some(code) => {
                    BAD_DATA_CODES.contains(&code)
                        // TOO_MANY_PARTS also means "merges are behind" (wait); this one
                        // shrinks when the batch is split.
                        || (code == 252 && text.contains("partitions for single INSERT"))
                }
                // A proxy's own answer, without ClickHouse's text.
                None => {
                    text.starts_with("400 ") || text.starts_with("413 ") || text.starts_with("422 ")
                }
            },
            _ => false,
        }
    }

    /// Whether the database or table is gone (a wiped or replaced server): the migrations
    /// must run again before anything ships.
    pub fn is_missing_schema(&self) -> bool {
        match self {
            Self::ClickHouse(::clickhouse::error::Error::BadResponse(text)) => {
                matches!(exception_code(text), Some(60 | 81))
            }
            _ => false,
        }
    }
}

/// ClickHouse error codes that blame the data: CANNOT_PARSE_TEXT (6),
/// CANNOT_PARSE_QUOTED_STRING (26), CANNOT_PARSE_INPUT_ASSERTION_FAILED (27),
/// CANNOT_PARSE_DATE (38), CANNOT_PARSE_DATETIME (41), ARGUMENT_OUT_OF_BOUND (69),
/// CANNOT_CONVERT_TYPE (70), CANNOT_PARSE_NUMBER (72), INCORRECT_DATA (117),
/// CANNOT_READ_ARRAY_FROM_TEXT (130), TOO_LARGE_STRING_SIZE (131),
/// VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE (321), FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (395),
/// DECIMAL_OVERFLOW (407), VIOLATED_CONSTRAINT (469).
const BAD_DATA_CODES: &[u32] = &[
    6, 26, 27, 38, 41, 69, 70, 72, 117, 130, 131, 321, 395, 407, 469,
];

/// The number after "Code: " in a ClickHouse error text.
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Bounds on one INSERT: a ClickHouse that stops answering fails the shipment (retried later)
/// instead of holding the shipper forever.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const END_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a failed statement only tried to add a column that exists (code 44 on 18.16,
/// DUPLICATE_COLUMN on current releases).
fn is_existing_column(statement: &str, error: &str) -> bool {
    statement.to_ascii_uppercase().contains("ADD COLUMN")
        && (error.contains("already exists") || error.contains("DUPLICATE_COLUMN"))
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
                match self.db.query(&statement).execute().await {
                    Ok(()) => {}
                    // A run cut off between a statement and recording its migration (the
                    // connection dropped) leaves the column in place; 18.16 has no `ADD COLUMN
                    // IF NOT EXISTS`, so the rerun must take "already exists" as done, or the
                    // schema (and the shipper behind it) would be stuck for good.
                    Err(e) if is_existing_column(&statement, &e.to_string()) => {
                        tracing::info!(
                            migration = name,
                            "column already added by an interrupted run"
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
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
        let rows: Vec<EventRow> = events
            .iter()
            .map(|(seq, e)| EventRow::from_event(*seq, e))
            .collect();
        self.insert_rows(&rows).await
    }

    /// Inserts rows in one INSERT; it succeeds only once ClickHouse confirmed it.
    pub async fn insert_rows(&self, rows: &[EventRow]) -> Result<(), AnalyticsError> {
        let mut insert = self.event_insert().await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// An open INSERT into `handoff_events`: rows stream to ClickHouse as they are written,
    /// and it takes effect once [`Insert::end`](::clickhouse::insert::Insert::end) succeeds.
    pub async fn event_insert(
        &self,
    ) -> Result<::clickhouse::insert::Insert<EventRow>, AnalyticsError> {
        Ok(self
            .db
            .insert::<EventRow>("handoff_events")
            .await?
            .with_timeouts(Some(SEND_TIMEOUT), Some(END_TIMEOUT)))
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

/// One row of `handoff_events`, in column order. Built and written once per shipped event, so
/// it borrows what it can: the kinds are static names and the ids are formatted as they are
/// written, not allocated.
#[derive(Debug, Clone, PartialEq, ::clickhouse::Row, Serialize)]
pub struct EventRow {
    /// Unique event id (UUID text).
    pub event_id: UuidText,
    /// `requested`, `queued`, `assigned`, ...
    pub event_type: &'static str,
    /// The ticket.
    pub handoff_id: UuidText,
    /// The conversation.
    pub conversation_id: UuidText,
    /// The channel's name.
    pub channel: &'static str,
    /// The handoff reason.
    pub reason: &'static str,
    /// The priority.
    pub priority: &'static str,
    /// The agent, or empty.
    pub agent_id: UuidText,
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

/// A UUID in a `String` column: its hyphenated lower-case text, or empty for none. Formatted
/// on the stack as the row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UuidText(pub Option<uuid::Uuid>);

impl UuidText {
    /// The length of its text.
    pub fn len(&self) -> usize {
        if self.0.is_some() {
            uuid::fmt::Hyphenated::LENGTH
        } else {
            0
        }
    }

    /// Whether it stands for no id (the empty string).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl Serialize for UuidText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(id) => serializer.serialize_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            None => serializer.serialize_str(""),
        }
    }
}

impl EventRow {
    /// The row for an event at outbox position `seq`.
    pub fn from_event(seq: i64, e: &HandoffEvent) -> Self {
        Self::with_texts(seq, e, e.team.clone(), e.detail.clone())
    }

    /// [`EventRow::from_event`] for an event no longer needed: its texts move into the row.
    pub fn from_owned(seq: i64, mut e: HandoffEvent) -> Self {
        let (team, detail) = (std::mem::take(&mut e.team), std::mem::take(&mut e.detail));
        Self::with_texts(seq, &e, team, detail)
    }

    fn with_texts(seq: i64, e: &HandoffEvent, team: String, detail: String) -> Self {
        Self {
            event_id: UuidText(Some(e.event_id)),
            event_type: e.kind.as_str(),
            handoff_id: UuidText(Some(e.handoff_id.as_uuid())),
            conversation_id: UuidText(Some(e.conversation_id.as_uuid())),
            channel: e.channel.as_str(),
            reason: e.reason.as_str(),
            priority: e.priority.as_str(),
            agent_id: UuidText(e.agent_id.map(|a| a.as_uuid())),
            occurred_at: crate::model::Timestamp::from_millis(e.occurred_at_ms)
                .as_unix_seconds_u32(),
            occurred_at_ms: e.occurred_at_ms.max(0) as u64,
            wait_ms: e.wait_ms.max(0) as u64,
            seq: seq.max(0) as u64,
            team,
            detail,
        }
    }

    /// About how many bytes the row takes in RowBinary: each text and its length, the
    /// numbers.
    pub fn wire_bytes(&self) -> u64 {
        let texts = [
            self.event_id.len(),
            self.event_type.len(),
            self.handoff_id.len(),
            self.conversation_id.len(),
            self.channel.len(),
            self.reason.len(),
            self.priority.len(),
            self.agent_id.len(),
            self.team.len(),
            self.detail.len(),
        ];
        let text: usize = texts.iter().map(|n| n + 1).sum();
        (text + 4 + 3 * 8) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_an_interrupted_migration_already_added_counts_as_added() {
        let add = "ALTER TABLE handoff_events ADD COLUMN team String DEFAULT ''";
        assert!(is_existing_column(
            add,
            "Code: 44, e.displayText() = DB::Exception: Cannot add column team: column with this name already exists"
        ));
        assert!(!is_existing_column(
            add,
            "Code: 60, Table handoff_events doesn't exist"
        ));
        assert!(!is_existing_column(
            "CREATE TABLE x (a String) ENGINE = Memory",
            "already exists"
        ));
    }

    #[test]
    fn ids_are_written_as_their_text_and_no_agent_as_empty() {
        use crate::model::*;
        let now = Timestamp::now();
        let e = HandoffEvent::new(
            HandoffEventKind::Queued,
            HandoffId::new(),
            ConversationId::new(),
            ChannelKind::Api,
            HandoffReason::CustomerRequest,
            Priority::Normal,
            None,
            now,
            now,
        )
        .with(Some("billing"), Some("rule 7"));
        let row = EventRow::from_event(42, &e);
        assert_eq!(row, EventRow::from_owned(42, e.clone()));
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["event_id"], e.event_id.to_string());
        assert_eq!(json["handoff_id"], e.handoff_id.to_string());
        assert_eq!(json["conversation_id"], e.conversation_id.to_string());
        assert_eq!(json["agent_id"], "");
        assert_eq!(json["event_type"], "queued");
        assert_eq!(json["team"], "billing");
        assert_eq!(json["detail"], "rule 7");
        assert_eq!(json["seq"], 42);
        let agent = AgentId::new();
        let with_agent = EventRow::from_event(
            1,
            &HandoffEvent {
                agent_id: Some(agent),
                ..e
            },
        );
        assert_eq!(
            serde_json::to_value(&with_agent).unwrap()["agent_id"],
            agent.to_string()
        );
        // Text lengths plus a length byte each, then the numbers.
        let names =
            row.event_type.len() + row.channel.len() + row.reason.len() + row.priority.len();
        let texts = 36 * 3 + names + "billing".len() + "rule 7".len();
        assert_eq!(row.wire_bytes(), (texts + 10 + 4 + 24) as u64);
    }

    #[test]
    fn migration_files_split_into_statements_without_comments() {
        let parts =
            split_statements("-- a comment; here\nCREATE TABLE a (x UInt8);\n\nSELECT 1;\n");
        assert_eq!(
            parts,
            vec!["CREATE TABLE a (x UInt8)".to_owned(), "SELECT 1".to_owned()]
        );
    }

    fn refusal(text: &str) -> AnalyticsError {
        AnalyticsError::ClickHouse(::clickhouse::error::Error::BadResponse(text.to_owned()))
    }

    #[test]
    fn parse_errors_and_failed_checks_are_bad_data_in_old_and_new_wording() {
        for text in [
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \t before: x, e.what() = DB::Exception",
            "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function is non zero, e.what() = DB::Exception",
            "Code: 6. DB::Exception: Cannot parse string 'x' as UInt64. (CANNOT_PARSE_TEXT) (version 24.8.1.1)",
            "Code: 252, e.displayText() = DB::Exception: Too many partitions for single INSERT block (more than 100)",
            "400 Bad Request",
        ] {
            assert!(refusal(text).is_bad_data(), "{text}");
        }
    }

    #[test]
    fn outages_overload_and_schema_trouble_are_retried_not_dead_lettered() {
        for text in [
            "Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts",
            "Code: 60, e.displayText() = DB::Exception: Table baton.handoff_events doesn't exist.",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 53, e.displayText() = DB::Exception: Type mismatch",
            "Code: 516. DB::Exception: default: Authentication failed",
            "502 Bad Gateway",
            "503 Service Unavailable",
            "garbage with no code",
        ] {
            assert!(!refusal(text).is_bad_data(), "{text}");
        }
        assert!(!AnalyticsError::ClickHouse(::clickhouse::error::Error::TimedOut).is_bad_data());
        assert!(
            refusal("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist.")
                .is_missing_schema()
        );
        assert!(
            refusal("Code: 81. DB::Exception: Database baton doesn't exist. (UNKNOWN_DATABASE)")
                .is_missing_schema()
        );
        assert!(!refusal("Code: 27, e.displayText() = x").is_missing_schema());
    }

    #[test]
    fn database_names_must_be_plain_identifiers() {
        assert!(ClickHouse::new("http://x", "baton; DROP", "default", None).is_err());
        assert!(ClickHouse::new("http://x", "baton_test_1", "default", None).is_ok());
    }
}
