-- Percentiles from histograms (src/analytics/histogram.rs): each duration counts in a
-- logarithmic bucket (within 1% of it), so the rollup keeps counts per bucket instead of every
-- value, and a period of weeks merges a few thousand counts instead of millions of values.
--
-- The rollup is derived data: its tables are made again with the new columns, and its worker
-- (src/analytics/rollup.rs) computes every touched hour and day again from the handoffs (no
-- committed version: every hour is due). Until it has, the report merges the handoffs.
DROP TABLE IF EXISTS handoff_rollup;
DROP TABLE IF EXISTS handoff_rollup_commits;

-- handoff_rollup: as in 0004, per span (hour or UTC day) and combination of the five
-- attributes, the counts of handoff_metrics.sql; q_hist holds one key per duration of each
-- handoff of the combination (kind * 2048 + bucket, kinds: wait to assignment, wait to first
-- reply, time to accept, handle time), so merging spans concatenates them. Read when the
-- report is filtered by an attribute.
CREATE TABLE IF NOT EXISTS handoff_rollup
(
    sla_assignment_ms           UInt64,
    sla_first_reply_ms          UInt64,
    span_ms                     UInt64,
    start_ms                    UInt64,
    version                     UInt64,
    c_requested                 UInt64,
    c_assigned                  UInt64,
    c_replied                   UInt64,
    c_accepted                  UInt64,
    c_handled                   UInt64,
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
    q_hist                      Array(UInt16),
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

-- handoff_rollup_dims: the same spans and versions per breakdown row of the report (dimension
-- 'all' with key '', or channel, team, agent, reason or priority and a value): the counts
-- summed over the row's combinations, and each kind of duration as counts per bucket from its
-- first bucket with a count (h_*[i] = durations in bucket lo_* + i, src/analytics/histogram.rs:
-- without the leading zeros, most of an array). What a report without an attribute filter
-- reads, so a month is a few thousand rows of short arrays, summed.
CREATE TABLE IF NOT EXISTS handoff_rollup_dims
(
    sla_assignment_ms           UInt64,
    sla_first_reply_ms          UInt64,
    span_ms                     UInt64,
    start_ms                    UInt64,
    version                     UInt64,
    dimension                   String,
    key                         String,
    c_requested                 UInt64,
    c_assigned                  UInt64,
    c_replied                   UInt64,
    c_accepted                  UInt64,
    c_handled                   UInt64,
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
    lo_assign_wait              UInt16,
    h_assign_wait               Array(UInt32),
    lo_reply_wait               UInt16,
    h_reply_wait                Array(UInt32),
    lo_accept                   UInt16,
    h_accept                    Array(UInt32),
    lo_handle                   UInt16,
    h_handle                    Array(UInt32)
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000)))
ORDER BY (sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms, version);

-- As in 0004: a version counts once it is here, written after its rows in both tables.
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
