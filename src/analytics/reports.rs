//! Report figures for the dashboard and the report API, computed in ClickHouse (plus a few
//! live numbers from the store).
//!
//! The period figures (summary, drill-down) read `handoff_summary`: one row of aggregate states
//! per handoff, fed from `handoff_events` by a materialized view
//! (migrations/clickhouse/0003_handoff_summary.sql), ordered by request time. Its states are
//! idempotent (min, max, argMax, any, sets, `uniqExact` of event ids), so events that were
//! shipped twice and not yet merged count once, as they do in the queries that still read the
//! raw events (today's and live figures) with `FINAL`. The SQL lives in `queries/*.sql`, shared with the CI check that runs it
//! on a current ClickHouse (chdb) besides the 18.16 server the tests use. Each file names its
//! `?` placeholders in a `-- params:` line; [`bind`] binds the values by those names through
//! the clickhouse crate's escaping, so no user-supplied text is ever formatted into SQL.
//!
//! Period figures are about the *cohort* of handoffs requested in the period: a ticket
//! requested on Monday and resolved on Tuesday counts in Monday's resolutions. The README
//! ("Dashboard figures") defines every figure; [`HELP`] carries the short version.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::histogram::{Durations, Histogram, Kind};
use super::{AnalyticsError, ClickHouse};
use crate::model::{AgentId, ChannelKind, HandoffReason, HandoffStatus, Presence, Priority, Team};
use crate::store::Store;

/// The report queries (and the rollup's, src/analytics/rollup.rs) by name, as CI's
/// modern-ClickHouse check runs them.
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
    (
        "handoff_metrics",
        include_str!("queries/handoff_metrics.sql"),
    ),
    ("handoff_list", include_str!("queries/handoff_list.sql")),
    (
        "requested_recently",
        include_str!("queries/requested_recently.sql"),
    ),
    ("rollup_covered", include_str!("queries/rollup_covered.sql")),
    ("rollup_refresh", include_str!("queries/rollup_refresh.sql")),
    ("rollup_days", include_str!("queries/rollup_days.sql")),
    ("rollup_dims", include_str!("queries/rollup_dims.sql")),
    (
        "handoff_metrics_dims",
        include_str!("queries/handoff_metrics_dims.sql"),
    ),
    (
        "handoff_metrics_covered",
        include_str!("queries/handoff_metrics_covered.sql"),
    ),
    (
        "rollup_dirty_hours",
        include_str!("queries/rollup_dirty_hours.sql"),
    ),
    (
        "rollup_ready_days",
        include_str!("queries/rollup_ready_days.sql"),
    ),
    ("rollup_commit", include_str!("queries/rollup_commit.sql")),
    (
        "rollup_rehandoffs",
        include_str!("queries/rollup_rehandoffs.sql"),
    ),
];

/// One line of help per figure, keyed like the fields of [`Metrics`], [`Containment`] and
/// [`Live`], for the dashboard to show next to each number.
pub const HELP: &[(&str, &str)] = &[
    (
        "requested",
        "Handoffs requested in the period (each handoff once).",
    ),
    (
        "containment_rate",
        "Share of conversations with a customer message in the period that had no handoff requested in it: the bot finished them alone.",
    ),
    (
        "handoff_rate",
        "Share of conversations with a customer message in the period that had a handoff requested in it.",
    ),
    (
        "wait_to_assignment",
        "From the request to the first time an agent owned the ticket (p50/p90/p99, each within 1%), over handoffs that were assigned.",
    ),
    (
        "wait_to_first_reply",
        "From the request to the agent's first reply to the customer, over handoffs that got one.",
    ),
    (
        "time_to_accept",
        "From the offer to its acceptance, for the first offer each handoff accepted.",
    ),
    (
        "handle_time",
        "From the first assignment to the close (resolved or released), over assigned handoffs that closed.",
    ),
    (
        "resolution_rate",
        "Resolved by an agent, as a share of closed handoffs (resolved, released to the bot, abandoned).",
    ),
    (
        "abandoned",
        "Handoffs whose customer left while waiting (no message for abandon_after_secs).",
    ),
    (
        "waiting",
        "Handoffs of the period still waiting for an agent.",
    ),
    (
        "declines",
        "Offers turned down; offer_timeouts: offers that lapsed unanswered.",
    ),
    ("reoffered", "Handoffs offered more than once."),
    (
        "transfers_per_handoff",
        "Transfers (to a team or an agent) divided by handoffs requested.",
    ),
    ("released", "Handoffs handed back to the bot by an agent."),
    (
        "rehandoffs",
        "Released handoffs whose conversation asked for a person again within 24 hours: the bot failed twice.",
    ),
    (
        "sla_assignment_breaches",
        "Handoffs that waited longer than sla_assignment_secs for an agent, or are still waiting (or closed unassigned) beyond it.",
    ),
    (
        "sla_first_reply_breaches",
        "Handoffs whose first agent reply came later than sla_first_reply_secs, or has not come beyond it.",
    ),
    (
        "reasons_over_time",
        "Handoffs requested per reason and time bucket (minute, hour or day by the period's length), UTC.",
    ),
    (
        "heatmap",
        "Handoffs requested by weekday and hour of day, UTC.",
    ),
    (
        "queues",
        "Live: tickets waiting now per queue, and how long the oldest has waited.",
    ),
    (
        "agents",
        "Live: agents by presence, with their open tickets (offered or accepted) against max_concurrent.",
    ),
    (
        "requested_recently",
        "Live: handoffs requested in the last 5, 15 and 60 minutes.",
    ),
];

// ---------------------------------------------------------------------------------------------
// Filters

/// The longest period a report may cover.
pub const MAX_PERIOD_MS: i64 = 400 * 86_400_000;
/// Periods cannot start before this (2000-01-01T00:00:00Z): older dates are typos.
pub const EARLIEST_MS: i64 = 946_684_800_000;
const DAY_MS: i64 = 86_400_000;
const MAX_FILTER_LEN: usize = 128;

/// The report filter as it comes from the URL (all optional). Resolve it with
/// [`Filter::from_query`]; [`FilterQuery::to_query_string`] gives it back for links.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterQuery {
    /// `1h`, `today` (since midnight UTC, the default), `7d`, `30d` or `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// With `custom`: the start, RFC 3339 or epoch milliseconds (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `custom`: the end, RFC 3339 or epoch milliseconds (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A channel name (`web_chat`, `api`, `email`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// A team (queue); `general` is the general queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// An agent id: handoffs that agent owned last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A handoff reason (`customer_request`, `bot_failure`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A priority (`low`, `normal`, `high`, `urgent`), as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl FilterQuery {
    /// The filter as a URL query string (`range=7d&channel=api`), empty fields left out, in a
    /// fixed order: for shareable links, and the report cache's key.
    pub fn to_query_string(&self) -> String {
        let fields = [
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
            ("channel", &self.channel),
            ("team", &self.team),
            ("agent", &self.agent),
            ("reason", &self.reason),
            ("priority", &self.priority),
        ];
        fields
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", percent_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED_COMPLEMENT).to_string()
}

/// Everything RFC 3986 does not list as unreserved (letters, digits, `-_.~`).
pub(crate) const UNRESERVED_COMPLEMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');

/// The named periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Range {
    /// The last hour.
    #[serde(rename = "1h")]
    LastHour,
    /// Since midnight UTC.
    #[serde(rename = "today")]
    Today,
    /// The last 7 days.
    #[serde(rename = "7d")]
    Last7Days,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Last30Days,
    /// `from` to `to`.
    #[serde(rename = "custom")]
    Custom,
}

/// The width of the time buckets of [`Summary::reasons_over_time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Periods up to 3 hours.
    Minute,
    /// Periods up to 2 days.
    Hour,
    /// Longer periods.
    Day,
}

impl Bucket {
    /// The bucket for a period of `span_ms`.
    pub fn for_span(span_ms: i64) -> Self {
        if span_ms <= 3 * 3_600_000 {
            Bucket::Minute
        } else if span_ms <= 2 * DAY_MS {
            Bucket::Hour
        } else {
            Bucket::Day
        }
    }

    /// Its width in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => DAY_MS as u64,
        }
    }
}

/// Why a filter was refused (answered with 400 and this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `range` is not one of the names.
    #[error("range must be one of 1h, today, 7d, 30d, custom (got {0:?})")]
    Range(String),
    /// `custom` without both ends.
    #[error("range=custom needs both from and to")]
    MissingBound,
    /// `from`/`to` outside custom.
    #[error("from and to are only used with range=custom")]
    BoundWithoutCustom,
    /// Not RFC 3339 or epoch milliseconds.
    #[error("{0} must be an RFC 3339 time or epoch milliseconds")]
    Time(&'static str),
    /// Empty or backwards.
    #[error("from must be before to")]
    Backwards,
    /// Too long, too early or too far ahead.
    #[error("the period must lie between 2000-01-01 and tomorrow and span at most 400 days")]
    OutOfBounds,
    /// A filter value that cannot exist.
    #[error("invalid {field}: {why}")]
    Value {
        /// Which filter.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A resolved, validated filter: the period in epoch milliseconds and the optional
/// attributes. Build it with [`Filter::from_query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// The query it came from, normalized (trimmed, empty fields dropped).
    pub query: FilterQuery,
    /// Which range.
    pub range: Range,
    /// Period start, inclusive.
    pub from_ms: i64,
    /// Period end, exclusive.
    pub to_ms: i64,
    /// "Now" as the filter was resolved: live figures and still-waiting SLA breaches use it.
    pub now_ms: i64,
    /// Time bucket width for the period.
    pub bucket: Bucket,
    /// Only this channel.
    pub channel: Option<ChannelKind>,
    /// Only this team (`general` for the general queue).
    pub team: Option<String>,
    /// Only handoffs this agent owned last.
    pub agent: Option<AgentId>,
    /// Only this reason.
    pub reason: Option<HandoffReason>,
    /// Only this priority (as requested).
    pub priority: Option<Priority>,
}

/// Trims and drops empty values; refuses very long ones before parsing.
fn clean(field: &'static str, v: &Option<String>) -> Result<Option<String>, FilterError> {
    let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.len() > MAX_FILTER_LEN {
        return Err(FilterError::Value {
            field,
            why: format!("longer than {MAX_FILTER_LEN} characters"),
        });
    }
    Ok(Some(v.to_owned()))
}

fn parse_time(field: &'static str, v: &str) -> Result<i64, FilterError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<i64>().map_err(|_| FilterError::OutOfBounds);
    }
    crate::model::Timestamp::parse_rfc3339(v)
        .map(|t| t.as_millis())
        .map_err(|_| FilterError::Time(field))
}

fn value<T: std::str::FromStr>(
    field: &'static str,
    v: &Option<String>,
) -> Result<Option<T>, FilterError>
where
    T::Err: std::fmt::Display,
{
    v.as_deref()
        .map(|s| {
            s.parse::<T>().map_err(|e| FilterError::Value {
                field,
                why: e.to_string(),
            })
        })
        .transpose()
}

impl Filter {
    /// Resolves `q` at `now_ms`: named ranges end now (`today` starts at midnight UTC);
    /// `custom` takes `from`/`to`. Every value is checked, so a bad one is a clear 400.
    pub fn from_query(q: &FilterQuery, now_ms: i64) -> Result<Filter, FilterError> {
        let query = FilterQuery {
            range: clean("range", &q.range)?,
            from: clean("from", &q.from)?,
            to: clean("to", &q.to)?,
            channel: clean("channel", &q.channel)?,
            team: clean("team", &q.team)?.map(|t| t.to_ascii_lowercase()),
            agent: clean("agent", &q.agent)?,
            reason: clean("reason", &q.reason)?,
            priority: clean("priority", &q.priority)?,
        };
        let range = match query.range.as_deref().unwrap_or("today") {
            "1h" => Range::LastHour,
            "today" => Range::Today,
            "7d" => Range::Last7Days,
            "30d" => Range::Last30Days,
            "custom" => Range::Custom,
            other => return Err(FilterError::Range(other.to_owned())),
        };
        let (from_ms, to_ms) = match range {
            Range::Custom => {
                let (Some(from), Some(to)) = (&query.from, &query.to) else {
                    return Err(FilterError::MissingBound);
                };
                (parse_time("from", from)?, parse_time("to", to)?)
            }
            _ if query.from.is_some() || query.to.is_some() => {
                return Err(FilterError::BoundWithoutCustom);
            }
            Range::LastHour => (now_ms - 3_600_000, now_ms),
            Range::Today => (now_ms.div_euclid(DAY_MS) * DAY_MS, now_ms),
            Range::Last7Days => (now_ms - 7 * DAY_MS, now_ms),
            Range::Last30Days => (now_ms - 30 * DAY_MS, now_ms),
        };
        if from_ms >= to_ms && range == Range::Custom {
            return Err(FilterError::Backwards);
        }
        if from_ms < EARLIEST_MS
            || to_ms > now_ms.saturating_add(DAY_MS)
            || to_ms - from_ms > MAX_PERIOD_MS
        {
            return Err(FilterError::OutOfBounds);
        }
        // Named ranges at midnight sharp are empty; keep them valid (one millisecond).
        let to_ms = to_ms.max(from_ms + 1);
        let team = match &query.team {
            Some(t) => Some(
                Team::parse(t)
                    .map_err(|e| FilterError::Value {
                        field: "team",
                        why: e.to_string(),
                    })?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Filter {
            range,
            from_ms,
            to_ms,
            now_ms,
            bucket: Bucket::for_span(to_ms - from_ms),
            channel: value("channel", &query.channel)?,
            team,
            agent: value("agent", &query.agent)?,
            reason: value("reason", &query.reason)?,
            priority: value("priority", &query.priority)?,
            query,
        })
    }
}

/// SLA targets the reports measure against (from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlaTargets {
    /// Request to assignment, seconds (`sla_assignment_secs`).
    pub assignment_secs: u64,
    /// Request to the first agent reply, seconds (`sla_first_reply_secs`).
    pub first_reply_secs: u64,
}

impl SlaTargets {
    /// The targets configured in `settings`.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            assignment_secs: settings.sla_assignment_secs,
            first_reply_secs: settings.sla_first_reply_secs,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binding

/// The names a query's `-- params:` line lists, in placeholder order.
fn param_names(sql: &str) -> Vec<&str> {
    sql.lines()
        .find_map(|l| l.strip_prefix("-- params:"))
        .map(|l| l.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

/// A value for a named placeholder.
#[derive(Clone)]
pub(crate) enum Param {
    Int(u64),
    Text(String),
    Ints(Vec<u64>),
}

pub(crate) fn query_sql(name: &str) -> &'static str {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, q)| *q)
        .unwrap_or_default()
}

/// Builds the query `name` with every placeholder bound by name from `lookup`, through the
/// crate's escaping. A name `lookup` does not know is a bug in this file, caught by tests.
pub(crate) fn bind(
    ch: &ClickHouse,
    name: &str,
    lookup: impl Fn(&str) -> Option<Param>,
) -> ::clickhouse::query::Query {
    let sql = query_sql(name);
    let mut q = ch.client().query(sql);
    for p in param_names(sql) {
        q = match lookup(p) {
            Some(Param::Int(v)) => q.bind(v),
            Some(Param::Text(v)) => q.bind(v),
            Some(Param::Ints(v)) => q.bind(v),
            // Leaves a placeholder unbound: the crate then refuses to send the query.
            None => q,
        };
    }
    q
}

pub(crate) fn ms(v: i64) -> u64 {
    v.max(0) as u64
}

/// The placeholder values of a filter: the period, the attribute filters ('' = any), now and
/// the SLA targets.
fn filter_param(f: &Filter, sla: &SlaTargets, name: &str) -> Option<Param> {
    let text = |v: Option<&str>| Param::Text(v.unwrap_or_default().to_owned());
    Some(match name {
        "from_s" => Param::Int(ms(f.from_ms) / 1000),
        "from_ms" => Param::Int(ms(f.from_ms)),
        "to_ms" => Param::Int(ms(f.to_ms)),
        "now_ms" => Param::Int(ms(f.now_ms)),
        "channel" => text(f.channel.map(ChannelKind::as_str)),
        "team" => text(f.team.as_deref()),
        "agent" => Param::Text(f.agent.map(|a| a.to_string()).unwrap_or_default()),
        "reason" => text(f.reason.map(HandoffReason::as_str)),
        "priority" => text(f.priority.map(Priority::as_str)),
        "sla_assignment_ms" => Param::Int(sla.assignment_secs.saturating_mul(1000)),
        "sla_first_reply_ms" => Param::Int(sla.first_reply_secs.saturating_mul(1000)),
        "bucket_ms" => Param::Int(f.bucket.millis()),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Percentiles of a duration, in milliseconds, to within 1% (the value at index
/// `floor(level * n)` of the sorted durations, as its histogram bucket's value: see
/// [`super::histogram`]); `None` when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median (as `quantileExact(0.5)`: for an even count, the upper middle value).
    pub p50_ms: Option<u64>,
    /// 90th percentile.
    pub p90_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
}

impl Percentiles {
    fn from_histogram(h: &Histogram) -> Self {
        Self::new(h.count(), &h.percentiles(&[0.5, 0.9, 0.99]))
    }

    fn new(count: u64, q: &[u64]) -> Self {
        let at = |i: usize| (count > 0).then(|| q.get(i).copied()).flatten();
        Self {
            count,
            p50_ms: at(0),
            p90_ms: at(1),
            p99_ms: at(2),
        }
    }
}

/// Every period figure for one set of handoffs (all of them, or one breakdown key). Counts
/// are handoffs unless said otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Handoffs requested in the period.
    pub requested: u64,
    /// Of those, assigned to an agent at some point.
    pub assigned: u64,
    /// Request to first assignment.
    pub wait_to_assignment: Percentiles,
    /// Request to the agent's first reply.
    pub wait_to_first_reply: Percentiles,
    /// Offer to acceptance (the first accepted offer).
    pub time_to_accept: Percentiles,
    /// First assignment to resolved/released.
    pub handle_time: Percentiles,
    /// Closed by an agent.
    pub resolved: u64,
    /// Handed back to the bot.
    pub released: u64,
    /// The customer left while waiting.
    pub abandoned: u64,
    /// Not closed yet.
    pub open: u64,
    /// Not closed and never assigned: still waiting.
    pub waiting: u64,
    /// `resolved / (resolved + released + abandoned)`; `None` when nothing closed.
    pub resolution_rate: Option<f64>,
    /// Offered at least once.
    pub offered: u64,
    /// Offered more than once.
    pub reoffered: u64,
    /// Offers made (events).
    pub offers: u64,
    /// Offers declined (events).
    pub declines: u64,
    /// Offers that lapsed (events).
    pub offer_timeouts: u64,
    /// Transfers (events).
    pub transfers: u64,
    /// Transferred at least once.
    pub transferred: u64,
    /// `transfers / requested`; `None` without handoffs.
    pub transfers_per_handoff: Option<f64>,
    /// Released and requested again (same conversation) within 24 hours.
    pub rehandoffs: u64,
    /// Waited (or have been waiting) longer than the assignment target.
    pub sla_assignment_breaches: u64,
    /// First reply later (or still missing) beyond the first-reply target.
    pub sla_first_reply_breaches: u64,
}

/// One row of a breakdown table: the figures of the handoffs with one value of a dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    /// `channel`, `team`, `agent`, `reason` or `priority` (`all` for the totals).
    pub dimension: String,
    /// The value: a channel name, a team (`general`), an agent id (empty: never assigned),
    /// a reason, a priority.
    pub key: String,
    /// The figures.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// Bot containment, from the store (ClickHouse only sees handoffs, not the conversations the
/// bot finished alone). Filtered by period and channel only: a conversation without a handoff
/// has no team, agent, reason or priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Containment {
    /// Conversations with a customer message in the period.
    pub conversations: u64,
    /// Of those, with a handoff requested in the period.
    pub handed_off: u64,
    /// Of those, without: the bot finished them alone.
    pub contained: u64,
    /// `contained / conversations`.
    pub containment_rate: Option<f64>,
    /// `handed_off / conversations`.
    pub handoff_rate: Option<f64>,
}

/// Handoffs requested in one time bucket for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct ReasonBucket {
    /// Bucket start, epoch milliseconds (UTC-aligned).
    pub bucket_start_ms: u64,
    /// The reason.
    pub reason: String,
    /// Handoffs requested.
    pub count: u64,
}

/// Handoffs requested in one hour of one weekday (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct HeatCell {
    /// 1 = Monday ... 7 = Sunday.
    pub weekday: u8,
    /// 0..=23.
    pub hour: u8,
    /// Handoffs requested.
    pub count: u64,
}

/// The report for a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The filter, resolved.
    pub filter: Filter,
    /// The SLA targets the breaches are counted against.
    pub sla: SlaTargets,
    /// Figures over every handoff of the period that matches the filter.
    pub totals: Metrics,
    /// Bot containment and handoff rate.
    pub containment: Containment,
    /// Per channel, most handoffs first.
    pub by_channel: Vec<Breakdown>,
    /// Per team (last team of the handoff).
    pub by_team: Vec<Breakdown>,
    /// Per agent (last owner; key '' = never assigned).
    pub by_agent: Vec<Breakdown>,
    /// Per reason.
    pub by_reason: Vec<Breakdown>,
    /// Per priority (as requested).
    pub by_priority: Vec<Breakdown>,
    /// Handoffs per reason and time bucket (`filter.bucket`), oldest first.
    pub reasons_over_time: Vec<ReasonBucket>,
    /// Handoffs by weekday and hour (UTC); cells without handoffs are left out.
    pub heatmap: Vec<HeatCell>,
}

impl Summary {
    /// All breakdown rows, totals first (`dimension` = `all`): the CSV form of the summary.
    pub fn breakdown_rows(&self) -> Vec<Breakdown> {
        let mut rows = vec![Breakdown {
            dimension: "all".into(),
            key: String::new(),
            metrics: self.totals.clone(),
        }];
        for table in [
            &self.by_channel,
            &self.by_team,
            &self.by_agent,
            &self.by_reason,
            &self.by_priority,
        ] {
            rows.extend(table.iter().cloned());
        }
        rows
    }
}

/// Declares a row struct of the report queries: the leading fields given, then the twenty
/// counts every report query returns in the same order (the `counts` block of
/// `handoff_metrics.sql`, summed), then the trailing fields given.
macro_rules! counted_row {
    ($(#[$meta:meta])* $name:ident { $($pre:ident: $pre_ty:ty,)* } { $($post:ident: $post_ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, ::clickhouse::Row)]
        struct $name {
            $($pre: $pre_ty,)*
            requested: u64,
            assigned: u64,
            // (the histograms count these three)
            _replied: u64,
            _accepted: u64,
            _handled: u64,
            resolved: u64,
            released: u64,
            abandoned: u64,
            open: u64,
            waiting: u64,
            offered: u64,
            reoffered: u64,
            offers: u64,
            declines: u64,
            offer_timeouts: u64,
            transfers: u64,
            transferred: u64,
            rehandoffs: u64,
            sla_assignment_breaches: u64,
            sla_first_reply_breaches: u64,
            $($post: $post_ty,)*
        }

        impl $name {
            /// Adds this row's counts to `into`, report row `dimension`, and its chart buckets
            /// if that is a 'reason' row, its heat cells if it is the 'all' row: the only rows
            /// the chart and the heatmap read.
            fn add_to(&self, into: &mut RowTotals, dimension: &str) {
                let c = &mut into.counts;
                c.requested += self.requested;
                c.assigned += self.assigned;
                c.resolved += self.resolved;
                c.released += self.released;
                c.abandoned += self.abandoned;
                c.open += self.open;
                c.waiting += self.waiting;
                c.offered += self.offered;
                c.reoffered += self.reoffered;
                c.offers += self.offers;
                c.declines += self.declines;
                c.offer_timeouts += self.offer_timeouts;
                c.transfers += self.transfers;
                c.transferred += self.transferred;
                c.rehandoffs += self.rehandoffs;
                c.sla_assignment_breaches += self.sla_assignment_breaches;
                c.sla_first_reply_breaches += self.sla_first_reply_breaches;
                if dimension == "reason" {
                    for (start, n) in self.bucket_starts.iter().zip(&self.bucket_counts) {
                        *into.buckets.entry(*start).or_default() += n;
                    }
                }
                if dimension == "all" {
                    for (cell, n) in self.heat_cells.iter().zip(&self.heat_counts) {
                        *into.heat.entry(*cell).or_default() += n;
                    }
                }
            }
        }
    };
}

counted_row!(
    /// A row of `handoff_metrics.sql`: one combination of attributes, from the handoffs of the
    /// hours not covered or from the rollup.
    ComboRow {
        channel: String,
        team: String,
        agent: String,
        reason: String,
        priority: String,
    } {
        hist: Vec<u16>,
        bucket_starts: Vec<u64>,
        bucket_counts: Vec<u64>,
        heat_cells: Vec<u16>,
        heat_counts: Vec<u64>,
    }
);

counted_row!(
    /// A row of `handoff_metrics_dims.sql`: one report row over the covered hours.
    DimsRow {
        dimension: String,
        key: String,
    } {
        bucket_starts: Vec<u64>,
        bucket_counts: Vec<u64>,
        heat_cells: Vec<u16>,
        heat_counts: Vec<u64>,
        assign_wait_hist: Vec<u64>,
        reply_wait_hist: Vec<u64>,
        accept_hist: Vec<u64>,
        handle_hist: Vec<u64>,
    }
);

/// One report row while the query rows are added up.
#[derive(Debug, Default)]
struct RowTotals {
    counts: Metrics,
    durations: Durations,
    /// Handoffs per chart bucket (the 'reason' rows only).
    buckets: std::collections::BTreeMap<u64, u64>,
    /// Handoffs per weekday * 100 + hour (the 'all' row only).
    heat: std::collections::BTreeMap<u16, u64>,
}

impl RowTotals {
    fn into_metrics(self) -> Metrics {
        let c = self.counts;
        let d = &self.durations;
        let closed = c.resolved + c.released + c.abandoned;
        Metrics {
            wait_to_assignment: Percentiles::from_histogram(d.kind(Kind::AssignWait)),
            wait_to_first_reply: Percentiles::from_histogram(d.kind(Kind::ReplyWait)),
            time_to_accept: Percentiles::from_histogram(d.kind(Kind::Accept)),
            handle_time: Percentiles::from_histogram(d.kind(Kind::Handle)),
            resolution_rate: ratio(c.resolved, closed),
            transfers_per_handoff: ratio(c.transfers, c.requested),
            ..c
        }
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The longest run of consecutive hours in `hours` (ascending hour starts), as `[from, to)`
/// in milliseconds; `(0, 0)` when there are none.
fn longest_run(hours: &[u64]) -> (u64, u64) {
    const HOUR: u64 = 3_600_000;
    let mut best = (0, 0);
    let mut start = 0;
    for (i, &h) in hours.iter().enumerate() {
        if i == 0 || hours[i - 1] + HOUR != h {
            start = h;
        }
        if h + HOUR - start > best.1 - best.0 {
            best = (start, h + HOUR);
        }
    }
    best
}

/// The report's rows ('all' and one per dimension and value), from the combinations of
/// `handoff_metrics.sql` (each counts in its six rows) and the rows of
/// `handoff_metrics_dims.sql` (already per report row).
fn report_rows(combos: &[ComboRow], dims: &[DimsRow]) -> HashMap<(String, String), RowTotals> {
    let mut out: HashMap<(String, String), RowTotals> = HashMap::new();
    for row in dims {
        let totals = out
            .entry((row.dimension.clone(), row.key.clone()))
            .or_default();
        row.add_to(totals, &row.dimension);
        for (kind, counts) in [
            (Kind::AssignWait, &row.assign_wait_hist),
            (Kind::ReplyWait, &row.reply_wait_hist),
            (Kind::Accept, &row.accept_hist),
            (Kind::Handle, &row.handle_hist),
        ] {
            totals.durations.kind_mut(kind).add_dense(counts);
        }
    }
    for row in combos {
        let mut durations = Durations::default();
        durations.add_keys(&row.hist);
        for (dimension, key) in [
            ("all", ""),
            ("channel", row.channel.as_str()),
            ("team", row.team.as_str()),
            ("agent", row.agent.as_str()),
            ("reason", row.reason.as_str()),
            ("priority", row.priority.as_str()),
        ] {
            let totals = out
                .entry((dimension.to_owned(), key.to_owned()))
                .or_default();
            row.add_to(totals, dimension);
            for kind in Kind::ALL {
                totals
                    .durations
                    .kind_mut(kind)
                    .add_histogram(durations.kind(kind));
            }
        }
    }
    out
}

/// Computes the report for `f`: the hours the rollup covers (`rollup_covered.sql`), then
/// concurrently the combinations of the hours not covered (`handoff_metrics.sql`), the
/// covered ones (per combination when filtered by an attribute,
/// `handoff_metrics_covered.sql`; else per report row, `handoff_metrics_dims.sql`), and
/// containment from the store; the rows are added up here.
pub async fn summary(
    ch: &ClickHouse,
    store: &dyn Store,
    f: &Filter,
    sla: &SlaTargets,
) -> Result<Summary, AnalyticsError> {
    summary_with(ch, store, f, sla, true).await
}

/// [`summary`], with `use_rollup` false merging every handoff of the period directly: the same
/// figures by the longer way, for checks that compare the two.
pub async fn summary_with(
    ch: &ClickHouse,
    store: &dyn Store,
    f: &Filter,
    sla: &SlaTargets,
    use_rollup: bool,
) -> Result<Summary, AnalyticsError> {
    // Filtered by an attribute, the covered hours come as combinations (the per-row rollup
    // has no way to filter them); unfiltered, per report row, already added up.
    let filtered = f.channel.is_some()
        || f.team.is_some()
        || f.agent.is_some()
        || f.reason.is_some()
        || f.priority.is_some();
    let rows = async {
        // The hours the rollup covers and the versions to read them from (a 0 first: names
        // nothing, and keeps the lists' type when they are otherwise empty).
        let mut hours = vec![0];
        let mut spans = vec![0];
        if use_rollup {
            let covered: Vec<(u64, u64)> = bind(ch, "rollup_covered", |n| match n {
                "use_rollup" => Some(Param::Int(1)),
                n => filter_param(f, sla, n),
            })
            .fetch_all()
            .await?;
            for (hour, span) in covered {
                hours.push(hour);
                spans.push(span);
            }
            spans.sort_unstable();
            spans.dedup();
        }
        let (run_from, run_to) = longest_run(&hours[1..]);
        let combos = bind(ch, "handoff_metrics", |n| match n {
            "covered_hours" => Some(Param::Ints(hours.clone())),
            "covered_run_from_ms" => Some(Param::Int(run_from)),
            "covered_run_to_ms" => Some(Param::Int(run_to)),
            n => filter_param(f, sla, n),
        })
        .fetch_all::<ComboRow>();
        let covered = async {
            if spans.len() < 2 {
                return Ok::<_, AnalyticsError>((Vec::new(), Vec::new()));
            }
            let spans = Param::Ints(spans.clone());
            if filtered {
                let rows = bind(ch, "handoff_metrics_covered", |n| match n {
                    "covered_spans" => Some(spans.clone()),
                    n => filter_param(f, sla, n),
                })
                .fetch_all::<ComboRow>()
                .await?;
                Ok((rows, Vec::new()))
            } else {
                let rows = bind(ch, "handoff_metrics_dims", |n| match n {
                    "covered_spans" => Some(spans.clone()),
                    n => filter_param(f, sla, n),
                })
                .fetch_all::<DimsRow>()
                .await?;
                Ok((Vec::new(), rows))
            }
        };
        let (combos, covered) = futures_util::future::join(combos, covered).await;
        let (mut combos, (covered_combos, dims)) = (combos?, covered?);
        combos.extend(covered_combos);
        Ok::<_, AnalyticsError>(report_rows(&combos, &dims))
    };
    let activity = store.conversation_activity(
        crate::model::Timestamp::from_millis(f.from_ms),
        crate::model::Timestamp::from_millis(f.to_ms),
        f.channel,
    );
    let (rows, activity) = futures_util::future::join(rows, activity).await;
    let (rows, activity) = (rows?, activity?);

    let mut s = Summary {
        filter: f.clone(),
        sla: *sla,
        totals: Metrics::default(),
        containment: Containment {
            conversations: activity.active,
            handed_off: activity.handed_off,
            contained: activity.active - activity.handed_off.min(activity.active),
            containment_rate: ratio(
                activity.active - activity.handed_off.min(activity.active),
                activity.active,
            ),
            handoff_rate: ratio(activity.handed_off, activity.active),
        },
        by_channel: Vec::new(),
        by_team: Vec::new(),
        by_agent: Vec::new(),
        by_reason: Vec::new(),
        by_priority: Vec::new(),
        reasons_over_time: Vec::new(),
        heatmap: Vec::new(),
    };
    for ((dimension, key), totals) in rows {
        // The chart's buckets from the per-reason rows, the heatmap from the totals' row. Sums
        // over the rollup may hold buckets and cells of 0: left out, as empty.
        match dimension.as_str() {
            "reason" => {
                s.reasons_over_time
                    .extend(
                        totals
                            .buckets
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(start, n)| ReasonBucket {
                                bucket_start_ms: *start,
                                reason: key.clone(),
                                count: *n,
                            }),
                    )
            }
            "all" => {
                s.heatmap.extend(
                    totals
                        .heat
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(cell, n)| HeatCell {
                            weekday: (cell / 100) as u8,
                            hour: (cell % 100) as u8,
                            count: *n,
                        }),
                )
            }
            _ => {}
        }
        let row = Breakdown {
            dimension,
            key,
            metrics: totals.into_metrics(),
        };
        match row.dimension.as_str() {
            "all" => s.totals = row.metrics,
            "channel" => s.by_channel.push(row),
            "team" => s.by_team.push(row),
            "agent" => s.by_agent.push(row),
            "reason" => s.by_reason.push(row),
            "priority" => s.by_priority.push(row),
            _ => {}
        }
    }
    // Most handoffs first.
    for table in [
        &mut s.by_channel,
        &mut s.by_team,
        &mut s.by_agent,
        &mut s.by_reason,
        &mut s.by_priority,
    ] {
        table.sort_by(|a, b| (b.metrics.requested, &a.key).cmp(&(a.metrics.requested, &b.key)));
    }
    s.reasons_over_time
        .sort_by(|a, b| (a.bucket_start_ms, &a.reason).cmp(&(b.bucket_start_ms, &b.reason)));
    s.heatmap.sort_by_key(|c| (c.weekday, c.hour));
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Drill-down

/// Which handoffs a drill-down lists: the ones behind a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drill {
    /// Every handoff of the period.
    Requested,
    /// Assigned at some point.
    Assigned,
    /// Still waiting for an agent.
    Waiting,
    /// Not closed.
    Open,
    /// Resolved.
    Resolved,
    /// Released to the bot.
    Released,
    /// Abandoned.
    Abandoned,
    /// Offered more than once.
    Reoffered,
    /// Declined at least once.
    Declined,
    /// An offer lapsed at least once.
    OfferTimedOut,
    /// Transferred at least once.
    Transferred,
    /// Released and requested again within 24 hours.
    Rehandoff,
    /// Breached either SLA target.
    SlaBreached,
    /// Breached the assignment target.
    SlaAssignmentBreached,
    /// Breached the first-reply target.
    SlaFirstReplyBreached,
}

impl Drill {
    /// Every drill, in the order the API documents them.
    pub const ALL: &[Drill] = &[
        Drill::Requested,
        Drill::Assigned,
        Drill::Waiting,
        Drill::Open,
        Drill::Resolved,
        Drill::Released,
        Drill::Abandoned,
        Drill::Reoffered,
        Drill::Declined,
        Drill::OfferTimedOut,
        Drill::Transferred,
        Drill::Rehandoff,
        Drill::SlaBreached,
        Drill::SlaAssignmentBreached,
        Drill::SlaFirstReplyBreached,
    ];

    /// The name in URLs, and the tag `handoff_list.sql` gives matching handoffs.
    pub fn as_str(self) -> &'static str {
        match self {
            Drill::Requested => "requested",
            Drill::Assigned => "assigned",
            Drill::Waiting => "waiting",
            Drill::Open => "open",
            Drill::Resolved => "resolved",
            Drill::Released => "released",
            Drill::Abandoned => "abandoned",
            Drill::Reoffered => "reoffered",
            Drill::Declined => "declined",
            Drill::OfferTimedOut => "offer_timed_out",
            Drill::Transferred => "transferred",
            Drill::Rehandoff => "rehandoff",
            Drill::SlaBreached => "sla_breached",
            Drill::SlaAssignmentBreached => "sla_assignment_breached",
            Drill::SlaFirstReplyBreached => "sla_first_reply_breached",
        }
    }
}

impl std::str::FromStr for Drill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Drill::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Drill::ALL.iter().map(|d| d.as_str()).collect();
                format!("drill must be one of {}", names.join(", "))
            })
    }
}

/// At most this many rows per drill-down (newest requests first).
pub const DRILL_LIMIT: u64 = 1000;

/// One handoff of a drill-down. Never message bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRow {
    /// The ticket.
    pub handoff_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Channel name.
    pub channel: String,
    /// Last team (`general` for the general queue).
    pub team: String,
    /// Last owner, if any.
    pub agent_id: Option<String>,
    /// Handoff reason.
    pub reason: String,
    /// Priority as requested.
    pub priority: String,
    /// When it was requested, epoch milliseconds.
    pub requested_at_ms: u64,
    /// The same, RFC 3339.
    pub requested_at: String,
    /// Request to assignment; unassigned: until it closed, or until now while waiting.
    pub wait_to_assignment_ms: u64,
    /// Request to first reply; none yet: until it closed, or until now.
    pub wait_to_first_reply_ms: u64,
    /// Whether an agent ever owned it.
    pub assigned: bool,
    /// The latest event (`queued`, `assigned`, `resolved`, ...).
    pub last_status: String,
    /// `resolved`, `released`, `abandoned`, or `None` while open.
    pub outcome: Option<String>,
    /// Transfers.
    pub transfers: u64,
    /// Offers made.
    pub offers: u64,
}

#[derive(Debug, Deserialize, ::clickhouse::Row)]
struct ListRow {
    handoff_id: String,
    conversation_id: String,
    channel: String,
    team: String,
    agent_id: String,
    reason: String,
    priority: String,
    requested_at_ms: u64,
    wait_to_assignment_ms: u64,
    wait_to_first_reply_ms: u64,
    was_assigned: u8,
    last_status: String,
    outcome: String,
    transfers: u64,
    offers: u64,
}

/// The handoffs behind a figure: those of the period matching `f` and `drill`, newest
/// request first, at most [`DRILL_LIMIT`].
pub async fn handoffs(
    ch: &ClickHouse,
    f: &Filter,
    sla: &SlaTargets,
    drill: Drill,
) -> Result<Vec<HandoffRow>, AnalyticsError> {
    let rows: Vec<ListRow> = bind(ch, "handoff_list", |n| match n {
        "drill" => Some(Param::Text(drill.as_str().to_owned())),
        "limit" => Some(Param::Int(DRILL_LIMIT)),
        n => filter_param(f, sla, n),
    })
    .fetch_all()
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| HandoffRow {
            requested_at: crate::model::Timestamp::from_millis(r.requested_at_ms as i64)
                .to_rfc3339(),
            handoff_id: r.handoff_id,
            conversation_id: r.conversation_id,
            channel: r.channel,
            team: r.team,
            agent_id: (!r.agent_id.is_empty()).then_some(r.agent_id),
            reason: r.reason,
            priority: r.priority,
            requested_at_ms: r.requested_at_ms,
            wait_to_assignment_ms: r.wait_to_assignment_ms,
            wait_to_first_reply_ms: r.wait_to_first_reply_ms,
            assigned: r.was_assigned != 0,
            last_status: r.last_status,
            outcome: (!r.outcome.is_empty()).then_some(r.outcome),
            transfers: r.transfers,
            offers: r.offers,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Live

/// One queue right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueNow {
    /// The team (`general` for the general queue).
    pub team: String,
    /// Tickets waiting for an agent (queued, not offered).
    pub waiting: u64,
    /// Tickets offered to an agent who has not answered yet.
    pub offered: u64,
    /// How long the oldest waiting ticket has waited, ms.
    pub oldest_wait_ms: Option<u64>,
}

/// One agent right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentNow {
    /// The agent.
    pub agent_id: String,
    /// Display name.
    pub name: String,
    /// `online`, `away` or `offline`.
    pub presence: String,
    /// Open tickets: offered or accepted.
    pub load: u64,
    /// `max_concurrent`.
    pub capacity: u32,
    /// Their teams.
    pub teams: Vec<String>,
}

/// Agents per presence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PresenceCounts {
    /// Taking tickets.
    pub online: u64,
    /// Keeping theirs, taking none.
    pub away: u64,
    /// Not working.
    pub offline: u64,
}

/// Handoffs requested in the last minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct RecentRequests {
    /// Last 5 minutes.
    pub last_5m: u64,
    /// Last 15 minutes.
    pub last_15m: u64,
    /// Last 60 minutes.
    pub last_60m: u64,
}

/// What is happening now. Queues and agents come from the store (exact and current even while
/// ClickHouse is down or behind); recent requests from ClickHouse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Live {
    /// When this was computed, epoch ms.
    pub now_ms: i64,
    /// Queues with waiting or offered tickets, most waiting first.
    pub queues: Vec<QueueNow>,
    /// Every agent, online first, then by name.
    pub agents: Vec<AgentNow>,
    /// Agents per presence.
    pub presence: PresenceCounts,
    /// Handoffs requested recently; `None` when ClickHouse did not answer.
    pub requested_recently: Option<RecentRequests>,
    /// Handoff events waiting in the outbox to ship to ClickHouse.
    pub outbox_backlog: u64,
    /// True when there were more open tickets than [`LIVE_TICKET_LIMIT`] and counts are
    /// lower bounds.
    pub truncated: bool,
}

/// The entry of a team's queue, new and empty if it has none yet.
fn queue(queues: &mut HashMap<String, QueueNow>, team: String) -> &mut QueueNow {
    queues.entry(team.clone()).or_insert(QueueNow {
        team,
        waiting: 0,
        offered: 0,
        oldest_wait_ms: None,
    })
}

/// The most open tickets of one status the live view reads from the store.
pub const LIVE_TICKET_LIMIT: u32 = 20_000;

/// The live view at `now_ms`. Fails only when the store does.
pub async fn live(ch: &ClickHouse, store: &dyn Store, now_ms: i64) -> Result<Live, AnalyticsError> {
    let recent = bind(ch, "requested_recently", |n| match n {
        "now_ms" => Some(Param::Int(ms(now_ms))),
        "since_s" => Some(Param::Int(ms(now_ms - 3_600_000) / 1000)),
        _ => None,
    })
    .fetch_one::<RecentRequests>();
    let (recent, queued, offered, accepted, agents, backlog) = tokio::join!(
        recent,
        store.list_handoffs(Some(HandoffStatus::Queued), LIVE_TICKET_LIMIT),
        store.list_handoffs(Some(HandoffStatus::Assigned), LIVE_TICKET_LIMIT),
        store.list_handoffs(Some(HandoffStatus::Accepted), LIVE_TICKET_LIMIT),
        store.list_agents(),
        store.outbox_len(),
    );
    let (queued, offered, accepted, agents) = (queued?, offered?, accepted?, agents?);
    let truncated = [&queued, &offered, &accepted]
        .iter()
        .any(|l| l.len() >= LIVE_TICKET_LIMIT as usize);
    let requested_recently = match recent {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "live report: ClickHouse did not answer");
            None
        }
    };

    let team_of = |t: &Option<String>| {
        t.as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(crate::handoff::router::GENERAL)
            .to_owned()
    };
    let mut queues: HashMap<String, QueueNow> = HashMap::new();
    for h in &queued {
        let q = queue(&mut queues, team_of(&h.team));
        q.waiting += 1;
        let wait = ms(now_ms - h.requested_at.as_millis());
        q.oldest_wait_ms = Some(q.oldest_wait_ms.map_or(wait, |w| w.max(wait)));
    }
    for h in &offered {
        queue(&mut queues, team_of(&h.team)).offered += 1;
    }
    let mut queues: Vec<QueueNow> = queues.into_values().collect();
    queues.sort_by(|a, b| b.waiting.cmp(&a.waiting).then_with(|| a.team.cmp(&b.team)));

    let mut load: HashMap<AgentId, u64> = HashMap::new();
    for h in offered.iter().chain(&accepted) {
        if let Some(a) = h.assigned_agent_id {
            *load.entry(a).or_default() += 1;
        }
    }
    let mut presence = PresenceCounts::default();
    let mut agents: Vec<AgentNow> = agents
        .into_iter()
        .map(|a| {
            match a.presence {
                Presence::Online => presence.online += 1,
                Presence::Away => presence.away += 1,
                Presence::Offline => presence.offline += 1,
            }
            AgentNow {
                agent_id: a.id.to_string(),
                load: load.get(&a.id).copied().unwrap_or(0),
                name: a.name,
                presence: a.presence.as_str().to_owned(),
                capacity: a.max_concurrent,
                teams: a.teams.iter().map(|t| t.as_str().to_owned()).collect(),
            }
        })
        .collect();
    let rank = |p: &str| match p {
        "online" => 0,
        "away" => 1,
        _ => 2,
    };
    agents.sort_by(|a, b| {
        rank(&a.presence)
            .cmp(&rank(&b.presence))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Live {
        now_ms,
        queues,
        agents,
        presence,
        requested_recently,
        outbox_backlog: backlog.unwrap_or(0),
        truncated,
    })
}

// ---------------------------------------------------------------------------------------------
// Today (the current dashboard's headline figures)

/// Handoffs requested on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct ChannelCount {
    /// The channel's name.
    pub channel: String,
    /// Handoffs requested.
    pub handoffs: u64,
}

/// The dashboard's headline figures for today (kept for the current page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Today {
    /// Handoffs requested since midnight UTC, per channel.
    pub today_by_channel: Vec<ChannelCount>,
    /// Handoffs requested since midnight UTC.
    pub today_total: u64,
    /// Tickets whose latest step leaves them waiting for an agent.
    pub queued_now: u64,
    /// Median milliseconds from request to first offer, over tickets offered since midnight.
    pub median_wait_to_assign_ms: Option<f64>,
    /// Tickets first offered since midnight UTC.
    pub assigned_today: u64,
}

#[derive(Debug, Deserialize, ::clickhouse::Row)]
struct WaitRow {
    assigned: u64,
    median_wait: f64,
}

/// Computes today's headline figures.
pub async fn today(ch: &ClickHouse) -> Result<Today, AnalyticsError> {
    let client = ch.client();
    let today_by_channel: Vec<ChannelCount> = client
        .query(query_sql("handoffs_today_by_channel"))
        .fetch_all()
        .await?;
    let queued_now: u64 = client.query(query_sql("queued_now")).fetch_one().await?;
    let wait: WaitRow = client
        .query(query_sql("wait_to_assignment_today"))
        .fetch_one()
        .await?;
    Ok(Today {
        today_total: today_by_channel.iter().map(|c| c.handoffs).sum(),
        today_by_channel,
        queued_now,
        median_wait_to_assign_ms: (wait.assigned > 0 && wait.median_wait.is_finite())
            .then_some(wait.median_wait),
        assigned_today: wait.assigned,
    })
}

// ---------------------------------------------------------------------------------------------
// CSV

/// A table that can be written as CSV: a header and one record per row.
pub trait CsvRecord {
    /// Column names.
    fn header() -> Vec<&'static str>;
    /// This row's fields, in header order.
    fn record(&self) -> Vec<String>;
}

/// Quotes a field when it needs it (RFC 4180): commas, quotes, line breaks; and prefixes
/// `'` to fields a spreadsheet would run as a formula (`=`, `+`, `-`, `@`), since team names
/// and ids come from users. Numbers are left as they are.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '@', '\t', '\r'])
        || (s.starts_with('-') && s.parse::<f64>().is_err());
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Writes rows as CSV (header first, CRLF line ends).
pub fn to_csv<T: CsvRecord>(rows: &[T]) -> String {
    let mut out = String::new();
    let mut line = |fields: Vec<String>| {
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    };
    line(T::header().into_iter().map(str::to_owned).collect());
    for r in rows {
        line(r.record());
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl CsvRecord for Breakdown {
    fn header() -> Vec<&'static str> {
        vec![
            "dimension",
            "key",
            "requested",
            "assigned",
            "wait_to_assignment_p50_ms",
            "wait_to_assignment_p90_ms",
            "wait_to_assignment_p99_ms",
            "wait_to_first_reply_p50_ms",
            "wait_to_first_reply_p90_ms",
            "wait_to_first_reply_p99_ms",
            "time_to_accept_p50_ms",
            "handle_time_p50_ms",
            "handle_time_p90_ms",
            "resolved",
            "released",
            "abandoned",
            "open",
            "waiting",
            "resolution_rate",
            "offered",
            "reoffered",
            "declines",
            "offer_timeouts",
            "transfers",
            "transferred",
            "rehandoffs",
            "sla_assignment_breaches",
            "sla_first_reply_breaches",
        ]
    }

    fn record(&self) -> Vec<String> {
        let m = &self.metrics;
        vec![
            self.dimension.clone(),
            self.key.clone(),
            m.requested.to_string(),
            m.assigned.to_string(),
            opt(m.wait_to_assignment.p50_ms),
            opt(m.wait_to_assignment.p90_ms),
            opt(m.wait_to_assignment.p99_ms),
            opt(m.wait_to_first_reply.p50_ms),
            opt(m.wait_to_first_reply.p90_ms),
            opt(m.wait_to_first_reply.p99_ms),
            opt(m.time_to_accept.p50_ms),
            opt(m.handle_time.p50_ms),
            opt(m.handle_time.p90_ms),
            m.resolved.to_string(),
            m.released.to_string(),
            m.abandoned.to_string(),
            m.open.to_string(),
            m.waiting.to_string(),
            opt(m.resolution_rate.map(|r| format!("{r:.4}"))),
            m.offered.to_string(),
            m.reoffered.to_string(),
            m.declines.to_string(),
            m.offer_timeouts.to_string(),
            m.transfers.to_string(),
            m.transferred.to_string(),
            m.rehandoffs.to_string(),
            m.sla_assignment_breaches.to_string(),
            m.sla_first_reply_breaches.to_string(),
        ]
    }
}

impl CsvRecord for HandoffRow {
    fn header() -> Vec<&'static str> {
        vec![
            "handoff_id",
            "conversation_id",
            "channel",
            "team",
            "agent_id",
            "reason",
            "priority",
            "requested_at",
            "wait_to_assignment_ms",
            "wait_to_first_reply_ms",
            "assigned",
            "last_status",
            "outcome",
            "transfers",
            "offers",
        ]
    }

    fn record(&self) -> Vec<String> {
        vec![
            self.handoff_id.clone(),
            self.conversation_id.clone(),
            self.channel.clone(),
            self.team.clone(),
            self.agent_id.clone().unwrap_or_default(),
            self.reason.clone(),
            self.priority.clone(),
            self.requested_at.clone(),
            self.wait_to_assignment_ms.to_string(),
            self.wait_to_first_reply_ms.to_string(),
            self.assigned.to_string(),
            self.last_status.clone(),
            self.outcome.clone().unwrap_or_default(),
            self.transfers.to_string(),
            self.offers.to_string(),
        ]
    }
}

impl CsvRecord for ReasonBucket {
    fn header() -> Vec<&'static str> {
        vec!["bucket_start_ms", "reason", "count"]
    }

    fn record(&self) -> Vec<String> {
        vec![
            self.bucket_start_ms.to_string(),
            self.reason.clone(),
            self.count.to_string(),
        ]
    }
}

impl CsvRecord for HeatCell {
    fn header() -> Vec<&'static str> {
        vec!["weekday", "hour", "count"]
    }

    fn record(&self) -> Vec<String> {
        vec![
            self.weekday.to_string(),
            self.hour.to_string(),
            self.count.to_string(),
        ]
    }
}

impl CsvRecord for QueueNow {
    fn header() -> Vec<&'static str> {
        vec!["team", "waiting", "offered", "oldest_wait_ms"]
    }

    fn record(&self) -> Vec<String> {
        vec![
            self.team.clone(),
            self.waiting.to_string(),
            self.offered.to_string(),
            opt(self.oldest_wait_ms),
        ]
    }
}

impl CsvRecord for AgentNow {
    fn header() -> Vec<&'static str> {
        vec!["agent_id", "name", "presence", "load", "capacity", "teams"]
    }

    fn record(&self) -> Vec<String> {
        vec![
            self.agent_id.clone(),
            self.name.clone(),
            self.presence.clone(),
            self.load.to_string(),
            self.capacity.to_string(),
            self.teams.join(" "),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Cache

/// A short-lived cache of computed reports, keyed by the request (the canonical filter query
/// string, plus the drill): many open dashboards refreshing every few seconds cost ClickHouse
/// one computation per key and [`ReportCache::TTL`], not one per viewer. A figure can be up
/// to that old. Requests that miss the same key at the same moment (every dashboard's
/// refresh when an entry expires) wait for one computation rather than each starting its own;
/// the cache holds at most [`ReportCache::MAX_ENTRIES`] keys per kind.
#[derive(Default)]
pub struct ReportCache {
    summaries: TtlMap<Summary>,
    handoffs: TtlMap<Vec<HandoffRow>>,
    live: TtlMap<Live>,
}

/// One key's report: computed once, by whichever request comes first, and then served until
/// [`ReportCache::TTL`] after it was done.
type Slot<T> = Arc<tokio::sync::OnceCell<(Instant, Arc<T>)>>;

struct TtlMap<T>(Mutex<HashMap<String, Slot<T>>>);

impl<T> Default for TtlMap<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<T> TtlMap<T> {
    /// The report at `key`: fresh from the cache, from a computation already under way (waiting
    /// for it), or from `compute`. A computation that fails is not kept: the next request (or
    /// the next one waiting) tries again.
    async fn get_or_compute<E>(
        &self,
        key: String,
        compute: impl Future<Output = Result<T, E>>,
    ) -> Result<Arc<T>, E> {
        let slot = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = |slot: &Slot<T>| {
                slot.get()
                    .is_none_or(|(done, _)| done.elapsed() < ReportCache::TTL)
            };
            match map.get(&key) {
                Some(slot) if fresh(slot) => slot.clone(),
                _ => {
                    if map.len() >= ReportCache::MAX_ENTRIES {
                        map.retain(|_, slot| fresh(slot));
                        if map.len() >= ReportCache::MAX_ENTRIES {
                            // Computations under way keep their slots; their waiters hold them.
                            map.clear();
                        }
                    }
                    map.entry(key).insert_entry(Slot::default()).get().clone()
                }
            }
        };
        let (_, report) = slot
            .get_or_try_init(|| async {
                let report = compute.await?;
                // Fresh from when it is done: a slow computation still serves a whole TTL.
                Ok((Instant::now(), Arc::new(report)))
            })
            .await?;
        Ok(report.clone())
    }
}

impl ReportCache {
    /// How long a computed report is served again.
    pub const TTL: Duration = Duration::from_secs(3);
    /// Keys kept per kind of report.
    pub const MAX_ENTRIES: usize = 256;

    /// [`summary`], cached by the filter's query string.
    pub async fn summary(
        &self,
        ch: &ClickHouse,
        store: &dyn Store,
        f: &Filter,
        sla: &SlaTargets,
    ) -> Result<Arc<Summary>, AnalyticsError> {
        self.summaries
            .get_or_compute(f.query.to_query_string(), summary(ch, store, f, sla))
            .await
    }

    /// [`handoffs`], cached by the filter's query string and the drill.
    pub async fn handoffs(
        &self,
        ch: &ClickHouse,
        f: &Filter,
        sla: &SlaTargets,
        drill: Drill,
    ) -> Result<Arc<Vec<HandoffRow>>, AnalyticsError> {
        let key = format!("{}#{}", f.query.to_query_string(), drill.as_str());
        self.handoffs
            .get_or_compute(key, handoffs(ch, f, sla, drill))
            .await
    }

    /// [`live`], cached as one key.
    pub async fn live(
        &self,
        ch: &ClickHouse,
        store: &dyn Store,
        now_ms: i64,
    ) -> Result<Arc<Live>, AnalyticsError> {
        self.live
            .get_or_compute(String::new(), live(ch, store, now_ms))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A computation that counts its runs and lets the others run before it finishes.
    async fn counted(runs: &std::sync::atomic::AtomicUsize, ok: bool) -> Result<usize, String> {
        let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        if ok {
            Ok(n)
        } else {
            Err(format!("run {n} failed"))
        }
    }

    #[tokio::test]
    async fn requests_that_miss_the_same_report_at_once_wait_for_one_computation() {
        let cache = TtlMap::<usize>::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let answers = futures_util::future::join_all(
            (0..10).map(|_| cache.get_or_compute("range=30d".into(), counted(&runs, true))),
        )
        .await;
        assert_eq!(runs.into_inner(), 1);
        assert!(
            answers.iter().all(|a| a.as_deref() == Ok(&1)),
            "{answers:?}"
        );
    }

    #[tokio::test]
    async fn different_reports_compute_side_by_side_and_a_fresh_one_is_served_again() {
        let cache = TtlMap::<usize>::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let answers = futures_util::future::join_all(
            ["range=1h", "range=today"]
                .map(|key| cache.get_or_compute(key.into(), counted(&runs, true))),
        )
        .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_ne!(answers[0], answers[1]);
        let again = cache
            .get_or_compute("range=1h".into(), counted(&runs, true))
            .await;
        assert_eq!(again, answers[0]);
        assert_eq!(runs.into_inner(), 2);
    }

    #[tokio::test]
    async fn a_failed_computation_is_not_kept_the_next_waiting_request_computes_again() {
        let cache = TtlMap::<usize>::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let (first, second) = tokio::join!(
            cache.get_or_compute("range=7d".into(), counted(&runs, false)),
            cache.get_or_compute("range=7d".into(), counted(&runs, true)),
        );
        assert_eq!(first, Err("run 1 failed".into()));
        assert_eq!(second.as_deref(), Ok(&2));
        assert_eq!(runs.into_inner(), 2);
    }

    const NOW: i64 = 1_772_500_000_000; // 2026-03-03T01:06:40Z

    fn q(pairs: &[(&str, &str)]) -> FilterQuery {
        let mut f = FilterQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "range" => f.range = v,
                "from" => f.from = v,
                "to" => f.to = v,
                "channel" => f.channel = v,
                "team" => f.team = v,
                "agent" => f.agent = v,
                "reason" => f.reason = v,
                "priority" => f.priority = v,
                _ => unreachable!(),
            }
        }
        f
    }

    #[test]
    fn today_is_the_default_and_starts_at_midnight_utc() {
        let f = Filter::from_query(&FilterQuery::default(), NOW).unwrap();
        assert_eq!(f.range, Range::Today);
        assert_eq!(f.from_ms, 1_772_496_000_000);
        assert_eq!(f.to_ms, NOW);
        assert_eq!(f.bucket, Bucket::Minute, "66 minutes into the day");
    }

    #[test]
    fn named_ranges_end_now_and_pick_their_bucket() {
        let f = Filter::from_query(&q(&[("range", "1h")]), NOW).unwrap();
        assert_eq!(
            (f.from_ms, f.to_ms, f.bucket),
            (NOW - 3_600_000, NOW, Bucket::Minute)
        );
        let f = Filter::from_query(&q(&[("range", "7d")]), NOW).unwrap();
        assert_eq!((f.to_ms - f.from_ms, f.bucket), (7 * DAY_MS, Bucket::Day));
        let f = Filter::from_query(&q(&[("range", "30d")]), NOW).unwrap();
        assert_eq!(f.to_ms - f.from_ms, 30 * DAY_MS);
    }

    #[test]
    fn custom_ranges_take_rfc3339_or_epoch_milliseconds() {
        let f = Filter::from_query(
            &q(&[
                ("range", "custom"),
                ("from", "2026-03-02T00:00:00Z"),
                ("to", "1772496000000"),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!((f.from_ms, f.to_ms), (1_772_409_600_000, 1_772_496_000_000));
        assert_eq!(f.bucket, Bucket::Hour);
    }

    #[test]
    fn bad_ranges_are_refused_with_a_reason() {
        let err = |pairs: &[(&str, &str)]| Filter::from_query(&q(pairs), NOW).unwrap_err();
        assert_eq!(err(&[("range", "week")]), FilterError::Range("week".into()));
        assert_eq!(
            err(&[("range", "custom"), ("from", "1")]),
            FilterError::MissingBound
        );
        assert_eq!(
            err(&[("range", "7d"), ("from", "1772409600000")]),
            FilterError::BoundWithoutCustom
        );
        assert_eq!(
            err(&[
                ("range", "custom"),
                ("from", "yesterday"),
                ("to", "1772409600000")
            ]),
            FilterError::Time("from")
        );
        assert_eq!(
            err(&[
                ("range", "custom"),
                ("from", "1772409600000"),
                ("to", "1772409600000")
            ]),
            FilterError::Backwards
        );
        // Huge, ancient, or far-future bounds.
        for (from, to) in [
            ("1", "1772409600000"),
            ("1772409600000", "99999999999999999999999"),
            ("1600000000000", "1772409600000"),
            ("1772409600000", "1872409600000"),
        ] {
            assert_eq!(
                err(&[("range", "custom"), ("from", from), ("to", to)]),
                FilterError::OutOfBounds,
                "{from}..{to}"
            );
        }
    }

    #[test]
    fn filter_values_must_name_something_that_can_exist() {
        let err = |pairs: &[(&str, &str)]| Filter::from_query(&q(pairs), NOW).unwrap_err();
        assert!(matches!(
            err(&[("channel", "fax")]),
            FilterError::Value {
                field: "channel",
                ..
            }
        ));
        assert!(matches!(
            err(&[("agent", "bob")]),
            FilterError::Value { field: "agent", .. }
        ));
        assert!(matches!(
            err(&[("team", "x' OR 1=1 --")]),
            FilterError::Value { field: "team", .. }
        ));
        assert!(matches!(
            err(&[("reason", "boredom")]),
            FilterError::Value {
                field: "reason",
                ..
            }
        ));
        assert!(matches!(
            err(&[("priority", "meh")]),
            FilterError::Value {
                field: "priority",
                ..
            }
        ));
        let f = Filter::from_query(
            &q(&[
                ("channel", "web_chat"),
                ("team", " Billing "),
                ("priority", "urgent"),
                ("reason", ""),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(f.channel, Some(ChannelKind::WebChat));
        assert_eq!(f.team.as_deref(), Some("billing"));
        assert_eq!(f.priority, Some(Priority::Urgent));
        assert_eq!(f.reason, None, "an empty value means no filter");
    }

    #[test]
    fn the_query_string_round_trips_for_links() {
        let original = q(&[
            ("range", "custom"),
            ("from", "2026-03-02T00:00:00+01:00"),
            ("to", "1772496000000"),
            ("team", "billing"),
        ]);
        let s = original.to_query_string();
        assert_eq!(
            s,
            "range=custom&from=2026-03-02T00%3A00%3A00%2B01%3A00&to=1772496000000&team=billing"
        );
        let back: FilterQuery = serde_json::from_value(serde_json::json!({
            "range": "custom", "from": "2026-03-02T00:00:00+01:00", "to": "1772496000000",
            "team": "billing"
        }))
        .unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn every_query_names_exactly_its_placeholders_and_binds_known_values() {
        let f = Filter::from_query(&FilterQuery::default(), NOW).unwrap();
        let sla = SlaTargets {
            assignment_secs: 120,
            first_reply_secs: 300,
        };
        for (name, sql) in QUERIES {
            let placeholders = sql.matches('?').count();
            let names = param_names(sql);
            assert_eq!(placeholders, names.len(), "{name}");
            for n in names {
                let known = filter_param(&f, &sla, n).is_some()
                    || matches!(
                        n,
                        "drill"
                            | "limit"
                            | "since_s"
                            | "use_rollup"
                            | "covered_hours"
                            | "covered_spans"
                            | "covered_run_from_ms"
                            | "covered_run_to_ms"
                            | "version"
                            | "snapshot_s"
                            | "span_ms"
                            | "starts"
                    );
                assert!(known, "{name}: unknown parameter {n}");
            }
        }
    }

    #[test]
    fn the_shared_handoff_block_is_the_same_in_every_query() {
        // A block's text, each line trimmed, without the row filter between the where
        // markers (the report leaves out the hours the rollup covers; the others read the
        // period as it is).
        let block = |sql: &str, begin: &str, end: &str| {
            let text = &sql[sql.find(begin)?..sql.find(end).unwrap()];
            let mut out = Vec::new();
            let mut in_where = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with("-- where:begin") {
                    in_where = true;
                } else if line.starts_with("-- where:end") {
                    in_where = false;
                } else if !in_where {
                    out.push(line.to_owned());
                }
            }
            Some(out.join("\n"))
        };
        for (begin, end, at_least) in [
            ("-- base:begin", "-- base:end", 3),
            ("-- derived:begin", "-- derived:end", 3),
            ("-- counts:begin", "-- counts:end", 2),
        ] {
            let blocks: Vec<_> = QUERIES
                .iter()
                .filter_map(|(_, sql)| block(sql, begin, end))
                .collect();
            assert!(blocks.len() >= at_least, "{begin}");
            assert!(blocks.windows(2).all(|w| w[0] == w[1]), "{begin} differs");
        }
    }

    #[test]
    fn the_longest_run_of_covered_hours_is_found() {
        let h = 3_600_000;
        assert_eq!(longest_run(&[]), (0, 0));
        assert_eq!(longest_run(&[5 * h]), (5 * h, 6 * h));
        assert_eq!(
            longest_run(&[h, 2 * h, 5 * h, 6 * h, 7 * h, 9 * h]),
            (5 * h, 8 * h)
        );
    }

    #[test]
    fn every_histogram_key_uses_the_one_bucket_expression() {
        let mut seen = 0;
        for (name, sql) in QUERIES.iter().filter(|(_, sql)| sql.contains("AS h_hist")) {
            for v in [
                "h_assign_wait",
                "h_reply_wait",
                "h_accept_ms",
                "h_handle_ms",
            ] {
                let expr = super::super::histogram::BUCKET_SQL.replace("{v}", v);
                assert!(sql.contains(&expr), "{name}: {v}");
            }
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-12"), "-12");
        let rows = vec![QueueNow {
            team: "a,b".into(),
            waiting: 2,
            offered: 0,
            oldest_wait_ms: None,
        }];
        assert_eq!(
            to_csv(&rows),
            "team,waiting,offered,oldest_wait_ms\r\n\"a,b\",2,0,\r\n"
        );
    }

    #[test]
    fn every_drill_has_a_name_that_parses_back() {
        for d in Drill::ALL {
            assert_eq!(d.as_str().parse::<Drill>(), Ok(*d));
        }
        assert!(
            "everything"
                .parse::<Drill>()
                .unwrap_err()
                .contains("sla_breached")
        );
    }
}
