//! Figures for the dashboard, computed in ClickHouse.
//!
//! Every query reads `handoff_events FINAL`, so events that were shipped twice and not yet
//! merged count once.

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
        .query(
            "SELECT channel, count() AS handoffs FROM handoff_events FINAL
             WHERE event_type = 'requested' AND occurred_at >= toStartOfDay(now())
             GROUP BY channel ORDER BY handoffs DESC, channel",
        )
        .fetch_all()
        .await?;
    // Only tickets of the last 30 days can still be waiting; the bound keeps the scan small.
    let queued_now: u64 = client
        .query(
            "SELECT count() FROM (
                 SELECT handoff_id, argMax(event_type, seq) AS last_step FROM handoff_events FINAL
                 WHERE occurred_at >= now() - 30 * 86400
                 GROUP BY handoff_id
             ) WHERE last_step IN ('requested', 'queued')",
        )
        .fetch_one()
        .await?;
    let wait: WaitRow = client
        .query(
            "SELECT count() AS assigned, if(count() = 0, nan, toFloat64(quantileExact(0.5)(wait_ms))) AS median_wait
             FROM handoff_events FINAL
             WHERE event_type = 'assigned' AND occurred_at >= toStartOfDay(now())",
        )
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
