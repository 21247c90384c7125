-- An hourly rollup of the period figures, so that a dashboard over weeks merges a few rows
-- per hour instead of every handoff's states (src/analytics/rollup.rs fills it; the report
-- query, src/analytics/queries/handoff_metrics.sql, reads it for the hours it covers and
-- merges the handoffs of every other hour of the period directly, as before).
--
-- handoff_touches: when the handoffs requested in an hour last changed. A materialized view
-- on handoff_events notes the request hour of every inserted block and the server time: a
-- replayed batch, a late event, a backfill, every INSERT touches its hours, whichever way it
-- came. (18.16 does not run the views of a view's target table, so it cannot watch
-- handoff_summary itself; views run one after another in name order, handoff_summary_mv
-- first, and readers allow a few seconds of slack besides.) cause 0 is an INSERT; cause 1 is
-- the rollup worker marking the hour of a released handoff whose conversation asked for a
-- person again (a re-handoff is decided by another handoff's request). ReplacingMergeTree
-- keeps the latest touch per hour and cause once merged; readers take max(touched_at).
CREATE TABLE IF NOT EXISTS handoff_touches
(
    hour_ms     UInt64,
    cause       UInt8,
    touched_at  DateTime
)
ENGINE = ReplacingMergeTree(touched_at)
ORDER BY (hour_ms, cause);

CREATE MATERIALIZED VIEW IF NOT EXISTS handoff_touches_mv TO handoff_touches AS
SELECT
    intDiv(toUInt64(occurred_at_ms - least(wait_ms, occurred_at_ms)), 3600000) * 3600000 AS hour_ms,
    toUInt8(0) AS cause,
    now() AS touched_at
FROM handoff_events
GROUP BY hour_ms;

-- The hours of the handoffs stored before this migration.
INSERT INTO handoff_touches
SELECT DISTINCT intDiv(requested_at_ms, 3600000) * 3600000 AS hour_ms, toUInt8(0) AS cause,
    now() AS touched_at
FROM handoff_summary;

-- handoff_rollup: per span of request time (an hour, span_ms 3600000, computed from the
-- handoffs; or a UTC day, 86400000, merged from its 24 hours) and combination of the five
-- attributes, the same counts and exact-percentile states (quantilesExact states hold every
-- value, so merging them is exact) that handoff_metrics.sql computes per combination from the
-- handoffs, for given SLA targets. Each computation of a span is a new version (rows are
-- never updated); a version counts once handoff_rollup_commits records it, after all its rows
-- are written. Readers take, per span, the latest committed version, and only when it was
-- computed after the latest touch of each of its hours (snapshot_at > touched_at + 5 s).
-- c_hours: the handoffs requested in each hour of the span (one for an hour, 24 for a day),
-- for the chart's hour buckets and the heatmap. Superseded versions are deleted by the worker.
CREATE TABLE IF NOT EXISTS handoff_rollup
(
    sla_assignment_ms           UInt64,
    sla_first_reply_ms          UInt64,
    span_ms                     UInt64,
    start_ms                    UInt64,
    version                     UInt64,
    c_requested                 UInt64,
    c_assigned                  UInt64,
    q_assign_wait               AggregateFunction(quantilesExactIf(0.5, 0.9, 0.99), UInt64, UInt8),
    c_replied                   UInt64,
    q_reply_wait                AggregateFunction(quantilesExactIf(0.5, 0.9, 0.99), UInt64, UInt8),
    c_accepted                  UInt64,
    q_accept                    AggregateFunction(quantilesExactIf(0.5, 0.9, 0.99), UInt64, UInt8),
    c_handled                   UInt64,
    q_handle                    AggregateFunction(quantilesExactIf(0.5, 0.9, 0.99), UInt64, UInt8),
    c_resolved                  UInt64,
    c_released                  UInt64,
    c_abandoned                 UInt64,
    c_open                      UInt64,
    c_waiting                   UInt64,
    c_offered                   UInt64,
    c_reoffered                 UInt64,
    c_offers                    UInt64,
    c_declines                  UInt64,
    c_offer_timeouts            UInt64,
    c_transfers                 UInt64,
    c_transferred               UInt64,
    c_rehandoffs                UInt64,
    c_sla_assignment_breaches   UInt64,
    c_sla_first_reply_breaches  UInt64,
    c_hours                     Array(UInt64),
    channel                     String,
    team                        String,
    agent                       String,
    reason                      String,
    priority                    String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000)))
ORDER BY (sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms, version);

-- One row per computed (span, version): written after the version's rows, so a version is
-- whole once it is here. snapshot_at is the server time taken before the computation looked
-- at anything: a touch at or after it may not be in the version.
CREATE TABLE IF NOT EXISTS handoff_rollup_commits
(
    sla_assignment_ms   UInt64,
    sla_first_reply_ms  UInt64,
    span_ms             UInt64,
    start_ms            UInt64,
    version             UInt64,
    snapshot_at         DateTime
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms);
