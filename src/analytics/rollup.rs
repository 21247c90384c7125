//! The rollup of the period figures (migrations/clickhouse/0004 and 0005): per span of
//! request time and combination of channel, team, agent, reason and priority, the counts and
//! histogram keys that `handoff_metrics.sql` would compute from the handoffs, and per span and
//! breakdown row the histograms of the durations (`rollup_dims.sql`), so that a period of
//! weeks merges a few thousand rows instead of every handoff.
//!
//! Spans are hours, computed from `handoff_summary` by `rollup_refresh.sql` (the same text as
//! the report), and UTC days, merged from their 24 hours by `rollup_days.sql`. Every
//! computation is a new version, recorded in `handoff_rollup_commits` after its rows; the
//! report reads, per hour of the period, the longest span whose latest version was computed
//! after the latest touch of each of its hours, and merges every other hour from the handoffs.
//! So the rollup is never needed for a figure to be right, only for it to be fast:
//!
//! - every INSERT into `handoff_events` touches the request hours of its events (a
//!   materialized view), which hides the hours' versions from the report at once; [`refresh`]
//!   computes them again once they have been quiet for a few seconds;
//! - a re-handoff is decided by a *later* request of the same conversation, which touches
//!   another hour: [`refresh`] touches the hours of the releases it concerns (until its next
//!   pass, at most `rollup_interval_ms` (1 s) later, such a release may still count as no re-handoff);
//! - the only figures that move with time, SLA breaches of handoffs still open, stop moving
//!   once the span is older than both targets: only such spans are computed, and the report
//!   only uses them then;
//! - the versions are per SLA targets: other targets start a rollup of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::reports::{Param, SlaTargets, bind, ms};
use super::{AnalyticsError, ClickHouse};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// Hours per INSERT when computing hours from the handoffs (a backlog goes in steps).
const HOURS_PER_STEP: usize = 24;
/// Days per INSERT when merging days from their hours.
const DAYS_PER_STEP: usize = 7;

/// What one [`refresh`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Hours computed from the handoffs.
    pub hours: usize,
    /// Days merged from their hours.
    pub days: usize,
    /// The server time (seconds) the pass started at: the next pass follows touches from a
    /// little before it.
    pub snapshot_s: u32,
}

/// A new version number: the time in microseconds-ish, strictly increasing in this process,
/// with a random tail so two gateways computing the same span at once do not collide.
fn next_version(now_ms: i64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let candidate = ms(now_ms) * 1000 + rand::rng().random_range(0..1000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let v = candidate.max(last + 1);
        match LAST.compare_exchange_weak(last, v, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return v,
            Err(seen) => last = seen,
        }
    }
}

/// Runs of consecutive spans (`step` apart), each at most `max` long: one INSERT each.
fn runs(starts: &[u64], step: u64, max: usize) -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = Vec::new();
    for &s in starts {
        match out.last_mut() {
            Some(run) if run.len() < max && run.last().is_some_and(|l| l + step == s) => {
                run.push(s)
            }
            _ => out.push(vec![s]),
        }
    }
    out
}

async fn server_now_s(ch: &ClickHouse) -> Result<u32, AnalyticsError> {
    Ok(ch
        .client()
        .query("SELECT toUInt32(now())")
        .fetch_one::<u32>()
        .await?)
}

fn sla_param(sla: &SlaTargets, name: &str) -> Option<Param> {
    match name {
        "sla_assignment_ms" => Some(Param::Int(sla.assignment_secs.saturating_mul(1000))),
        "sla_first_reply_ms" => Some(Param::Int(sla.first_reply_secs.saturating_mul(1000))),
        _ => None,
    }
}

/// Counts the histogram keys of version `version` (spans of `span_ms`) per breakdown row
/// (`rollup_dims.sql`): run after the version's combination rows, before its commit.
async fn dims(
    ch: &ClickHouse,
    sla: &SlaTargets,
    span_ms: u64,
    version: u64,
) -> Result<(), AnalyticsError> {
    bind(ch, "rollup_dims", |n| match n {
        "span_ms" => Some(Param::Int(span_ms)),
        "version" => Some(Param::Int(version)),
        n => sla_param(sla, n),
    })
    .execute()
    .await?;
    Ok(())
}

/// Records `starts` (spans of `span_ms`) as version `version`, computed from what was there
/// at `snapshot_s`.
async fn commit(
    ch: &ClickHouse,
    sla: &SlaTargets,
    span_ms: u64,
    starts: &[u64],
    version: u64,
    snapshot_s: u32,
) -> Result<(), AnalyticsError> {
    bind(ch, "rollup_commit", |n| match n {
        "span_ms" => Some(Param::Int(span_ms)),
        "starts" => Some(Param::Ints(starts.to_vec())),
        "version" => Some(Param::Int(version)),
        "snapshot_s" => Some(Param::Int(u64::from(snapshot_s))),
        n => sla_param(sla, n),
    })
    .execute()
    .await?;
    Ok(())
}

/// One pass: touches the hours of releases that requests since `since_s` made re-handoffs,
/// computes every hour that needs it (touched since its version, quiet, past both SLA targets
/// at `now_ms`), then merges every day whose hours are all covered and whose version is older
/// than their touches. Safe to run from several places at once (each computation is a version
/// of its own; the latest wins).
pub async fn refresh(
    ch: &ClickHouse,
    sla: &SlaTargets,
    now_ms: i64,
    since_s: u32,
) -> Result<Refreshed, AnalyticsError> {
    let snapshot_s = server_now_s(ch).await?;
    // Only when something was inserted since: the query reads the requests and releases
    // from the earliest hour touched since.
    let inserted: u64 = ch
        .client()
        .query(
            "SELECT count() FROM handoff_touches WHERE cause = 0 AND touched_at >= toDateTime(?)",
        )
        .bind(since_s)
        .fetch_one()
        .await?;
    if inserted > 0 {
        bind(ch, "rollup_rehandoffs", |n| match n {
            "since_s" => Some(Param::Int(u64::from(since_s))),
            _ => None,
        })
        .execute()
        .await?;
    }

    let hours: Vec<u64> = bind(ch, "rollup_dirty_hours", |n| match n {
        "now_ms" => Some(Param::Int(ms(now_ms))),
        "snapshot_s" => Some(Param::Int(u64::from(snapshot_s))),
        n => sla_param(sla, n),
    })
    .fetch_all()
    .await?;
    for run in runs(&hours, HOUR_MS, HOURS_PER_STEP) {
        let (from, to) = (run[0], run[run.len() - 1] + HOUR_MS);
        let version = next_version(now_ms);
        bind(ch, "rollup_refresh", |n| match n {
            "version" => Some(Param::Int(version)),
            "now_ms" => Some(Param::Int(ms(now_ms))),
            "from_ms" => Some(Param::Int(from)),
            "to_ms" => Some(Param::Int(to)),
            "from_s" => Some(Param::Int(from / 1000)),
            "channel" | "team" | "agent" | "reason" | "priority" => {
                Some(Param::Text(String::new()))
            }
            n => sla_param(sla, n),
        })
        .execute()
        .await?;
        dims(ch, sla, HOUR_MS, version).await?;
        commit(ch, sla, HOUR_MS, &run, version, snapshot_s).await?;
    }

    // The days, against the hours just committed.
    let day_snapshot_s = server_now_s(ch).await?;
    let days: Vec<u64> = bind(ch, "rollup_ready_days", |n| match n {
        "now_ms" => Some(Param::Int(ms(now_ms))),
        n => sla_param(sla, n),
    })
    .fetch_all()
    .await?;
    for run in runs(&days, DAY_MS, DAYS_PER_STEP) {
        let (from, to) = (run[0], run[run.len() - 1] + DAY_MS);
        let version = next_version(now_ms);
        bind(ch, "rollup_days", |n| match n {
            "version" => Some(Param::Int(version)),
            "from_ms" => Some(Param::Int(from)),
            "to_ms" => Some(Param::Int(to)),
            n => sla_param(sla, n),
        })
        .execute()
        .await?;
        dims(ch, sla, DAY_MS, version).await?;
        commit(ch, sla, DAY_MS, &run, version, day_snapshot_s).await?;
    }
    Ok(Refreshed {
        hours: hours.len(),
        days: days.len(),
        snapshot_s,
    })
}

/// How many hours and days [`refresh`] has left to compute at `now_ms`, quiet or not: 0 once
/// the rollup covers every settled span (for benchmarks and health checks).
pub async fn pending(
    ch: &ClickHouse,
    sla: &SlaTargets,
    now_ms: i64,
) -> Result<usize, AnalyticsError> {
    let hours: Vec<u64> = bind(ch, "rollup_dirty_hours", |n| match n {
        "now_ms" => Some(Param::Int(ms(now_ms))),
        "snapshot_s" => Some(Param::Int(u64::from(u32::MAX))),
        n => sla_param(sla, n),
    })
    .fetch_all()
    .await?;
    let days: Vec<u64> = bind(ch, "rollup_ready_days", |n| match n {
        "now_ms" => Some(Param::Int(ms(now_ms))),
        n => sla_param(sla, n),
    })
    .fetch_all()
    .await?;
    Ok(hours.len() + days.len())
}

/// Deletes the rows of superseded versions (a newer one is committed for the same span) and of
/// versions never committed (an INSERT that failed half-way), once they are older than
/// `older_than_ms` before `now_ms`: a report that chose a version a moment ago may still be
/// reading it. A mutation on ClickHouse's side, done in the background.
pub async fn cleanup(
    ch: &ClickHouse,
    sla: &SlaTargets,
    now_ms: i64,
    older_than_ms: u64,
) -> Result<usize, AnalyticsError> {
    let before = (ms(now_ms).saturating_sub(older_than_ms)) * 1000;
    // Each version of a span by a hash of (span, start, version): 18.16's `has` takes no
    // tuples of other integer widths.
    let stale: Vec<u64> = ch
        .client()
        .query(
            "SELECT DISTINCT cityHash64(span_ms, start_ms, version)
             FROM handoff_rollup
             WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND version < ?
                 AND (span_ms, start_ms, version) NOT IN
                 (
                     SELECT span_ms, start_ms, max(version)
                     FROM handoff_rollup_commits
                     WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ?
                     GROUP BY span_ms, start_ms
                 )
             LIMIT 1000",
        )
        .bind(sla.assignment_secs.saturating_mul(1000))
        .bind(sla.first_reply_secs.saturating_mul(1000))
        .bind(before)
        .bind(sla.assignment_secs.saturating_mul(1000))
        .bind(sla.first_reply_secs.saturating_mul(1000))
        .fetch_all()
        .await?;
    if stale.is_empty() {
        return Ok(0);
    }
    for table in ["handoff_rollup", "handoff_rollup_dims"] {
        ch.client()
            .query(&format!(
                "ALTER TABLE {table} DELETE
                 WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ?
                     AND has(?, cityHash64(span_ms, start_ms, version))"
            ))
            .bind(sla.assignment_secs.saturating_mul(1000))
            .bind(sla.first_reply_secs.saturating_mul(1000))
            .bind(&stale)
            .execute()
            .await?;
    }
    Ok(stale.len())
}

/// The background worker: [`refresh`] every `rollup_interval_ms`, [`cleanup`] every
/// [`Rollup::CLEANUP_EVERY`].
#[derive(Clone)]
pub struct Rollup {
    clickhouse: ClickHouse,
    sla: SlaTargets,
    interval: Duration,
}

impl Rollup {
    /// How often superseded versions are deleted.
    pub const CLEANUP_EVERY: Duration = Duration::from_secs(600);
    /// A step that takes longer than this is abandoned (and retried next time).
    const STEP_DEADLINE: Duration = Duration::from_secs(300);

    /// A worker keeping the rollup for `sla` up to date, looking for spans to compute every
    /// `interval`.
    pub fn new(clickhouse: ClickHouse, sla: SlaTargets, interval: Duration) -> Self {
        Self {
            clickhouse,
            sla,
            interval,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut since_s: u32 = 0;
        let mut migrated = false;
        let mut failures: u32 = 0;
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            let step = async {
                if !migrated {
                    self.clickhouse.migrate().await?;
                    migrated = true;
                }
                let now_ms = crate::model::Timestamp::now().as_millis();
                let done = refresh(&self.clickhouse, &self.sla, now_ms, since_s).await?;
                if last_cleanup.elapsed() >= Self::CLEANUP_EVERY {
                    cleanup(&self.clickhouse, &self.sla, now_ms, 600_000).await?;
                    last_cleanup = tokio::time::Instant::now();
                }
                Ok::<_, AnalyticsError>(done)
            };
            let wait = match tokio::time::timeout(Self::STEP_DEADLINE, step).await {
                Ok(Ok(done)) => {
                    failures = 0;
                    // Touches from a little before this pass's start are followed again.
                    since_s = done.snapshot_s.saturating_sub(10);
                    if done.hours + done.days > 0 {
                        tracing::debug!(hours = done.hours, days = done.days, "rollup refreshed");
                    }
                    self.interval
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    if e.is_missing_schema() {
                        migrated = false;
                    }
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(error = %e, failures, "rollup refresh failed; the report merges the handoffs meanwhile");
                    }
                    self.interval * failures.min(30)
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!("rollup refresh took too long; retrying");
                    self.interval
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_spans_go_in_bounded_runs() {
        let h = HOUR_MS;
        assert_eq!(
            runs(&[0, h, 2 * h, 5 * h, 6 * h, 9 * h], h, 2),
            vec![vec![0, h], vec![2 * h], vec![5 * h, 6 * h], vec![9 * h]]
        );
        assert!(runs(&[], h, 24).is_empty());
    }

    #[test]
    fn versions_only_grow() {
        let a = next_version(1_000);
        let b = next_version(1_000);
        let c = next_version(0);
        assert!(a < b && b < c);
    }
}
