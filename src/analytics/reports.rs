//! Figures for the dashboard, computed in ClickHouse.
//!
//! Every query reads `handoff_events FINAL`, so events that were shipped twice and not yet
//! merged count once. The SQL lives in `queries/*.sql`, shared with the CI check that runs it
//! on a current ClickHouse (chdb) besides the 18.16 server the tests use.

/// The dashboard's queries by name, as CI's modern-ClickHouse check runs them.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "handoffs_today_by_channel",
        include_str!("queries/handoffs_today_by_channel.sql"),
    ),
    ("queued_now", include_str!("queries/queued_now.sql")),
    (
        "wait_to_assignment_today",
        include_str!("queries/wait_to_assignment_today.sql"),
    ),
];

fn query(name: &str) -> &'static str {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, q)| *q)
        .unwrap_or_default()
}

use serde::{Deserialize, Serialize};

use super::{AnalyticsError, ClickHouse};

/// Handoffs requested on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct ChannelCount {
    /// The channel's name.
    pub channel: String,
    /// Handoffs requested.
    pub handoffs: u64,
}

/// The dashboard's headline figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Handoffs requested since midnight UTC, per channel.
    pub today_by_channel: Vec<ChannelCount>,
    /// Handoffs requested since midnight UTC.
    pub today_total: u64,
    /// Tickets whose latest step is `queued` or `requested`: waiting for an agent now.
    pub queued_now: u64,
    /// Median milliseconds from request to assignment, over assignments since midnight UTC.
    pub median_wait_to_assign_ms: Option<f64>,
    /// Assignments since midnight UTC.
    pub assigned_today: u64,
}

#[derive(Debug, Deserialize, ::clickhouse::Row)]
struct WaitRow {
    assigned: u64,
    median_wait: f64,
}

/// Computes the summary.
pub async fn summary(ch: &ClickHouse) -> Result<Summary, AnalyticsError> {
    let client = ch.client();
    let today_by_channel: Vec<ChannelCount> = client
        .query(query("handoffs_today_by_channel"))
        .fetch_all()
        .await?;
    let queued_now: u64 = client.query(query("queued_now")).fetch_one().await?;
    let wait: WaitRow = client
        .query(query("wait_to_assignment_today"))
        .fetch_one()
        .await?;
    Ok(Summary {
        today_total: today_by_channel.iter().map(|c| c.handoffs).sum(),
        today_by_channel,
        queued_now,
        median_wait_to_assign_ms: (wait.assigned > 0 && wait.median_wait.is_finite())
            .then_some(wait.median_wait),
        assigned_today: wait.assigned,
    })
}
