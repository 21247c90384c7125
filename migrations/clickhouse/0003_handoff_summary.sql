-- One row per handoff (once merged) with what the period reports need, fed by a materialized
-- view from handoff_events, so a dashboard over millions of events reads handoffs, not events.
-- The raw events stay as they are (drill-downs, live figures).
--
-- Exact under duplicate inserts: shipping is at-least-once, and the view sees every INSERT,
-- replays included, before any merge. So every column is an idempotent aggregate state:
-- min/max/argMin/argMax/any, flags as maxIf(1, ...), sets as groupUniqArray, and counts as
-- uniqExactIf(event_id, ...), never count or sum. Reports merge the states with GROUP BY
-- handoff_id (rows of one handoff from different INSERTs may not be merged yet).
--
-- Ordered and partitioned by the request time, known on every event as occurred_at_ms - wait_ms
-- (wait_ms counts from the request), so a period prunes parts and granules. Runs on ClickHouse
-- 18.16 and current releases: no LowCardinality, no DateTime64, no TTL, no SimpleAggregateFunction.
CREATE TABLE IF NOT EXISTS handoff_summary
(
    requested_at_ms  UInt64,
    handoff_id       String,
    s_conversation   AggregateFunction(any, String),
    s_channel        AggregateFunction(any, String),
    s_reason         AggregateFunction(any, String),
    s_priority       AggregateFunction(argMin, String, UInt64),
    s_team           AggregateFunction(argMax, String, UInt64),
    s_agent          AggregateFunction(argMaxIf, String, UInt64, UInt8),
    s_requested      AggregateFunction(maxIf, UInt8, UInt8),
    s_requested_at   AggregateFunction(minIf, UInt64, UInt8),
    s_last           AggregateFunction(argMax, String, UInt64),
    s_assigned       AggregateFunction(maxIf, UInt8, UInt8),
    s_assign_wait    AggregateFunction(minIf, UInt64, UInt8),
    s_replied        AggregateFunction(maxIf, UInt8, UInt8),
    s_reply_wait     AggregateFunction(minIf, UInt64, UInt8),
    s_accepted       AggregateFunction(maxIf, UInt8, UInt8),
    s_accept_wait    AggregateFunction(minIf, UInt64, UInt8),
    s_offer_waits    AggregateFunction(groupUniqArrayIf, UInt64, UInt8),
    s_offers         AggregateFunction(uniqExactIf, String, UInt8),
    s_declines       AggregateFunction(uniqExactIf, String, UInt8),
    s_timeouts       AggregateFunction(uniqExactIf, String, UInt8),
    s_transfers      AggregateFunction(uniqExactIf, String, UInt8),
    s_outcome        AggregateFunction(argMaxIf, String, UInt64, UInt8),
    s_closed_wait    AggregateFunction(minIf, UInt64, UInt8),
    s_closed_at      AggregateFunction(minIf, UInt64, UInt8)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(requested_at_ms, 1000)))
ORDER BY (requested_at_ms, handoff_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS handoff_summary_mv TO handoff_summary AS
SELECT
    toUInt64(occurred_at_ms - least(wait_ms, occurred_at_ms)) AS requested_at_ms,
    handoff_id,
    anyState(conversation_id) AS s_conversation,
    anyState(channel) AS s_channel,
    anyState(reason) AS s_reason,
    argMinState(priority, seq) AS s_priority,
    argMaxState(team, seq) AS s_team,
    argMaxIfState(agent_id, seq, event_type = 'assigned') AS s_agent,
    maxIfState(toUInt8(1), event_type = 'requested') AS s_requested,
    minIfState(occurred_at_ms, event_type = 'requested') AS s_requested_at,
    argMaxState(event_type, seq) AS s_last,
    maxIfState(toUInt8(1), event_type = 'assigned') AS s_assigned,
    minIfState(wait_ms, event_type = 'assigned') AS s_assign_wait,
    maxIfState(toUInt8(1), event_type = 'first_agent_reply') AS s_replied,
    minIfState(wait_ms, event_type = 'first_agent_reply') AS s_reply_wait,
    maxIfState(toUInt8(1), event_type = 'accepted') AS s_accepted,
    minIfState(wait_ms, event_type = 'accepted') AS s_accept_wait,
    groupUniqArrayIfState(wait_ms, event_type = 'offered') AS s_offer_waits,
    uniqExactIfState(event_id, event_type = 'offered') AS s_offers,
    uniqExactIfState(event_id, event_type = 'declined') AS s_declines,
    uniqExactIfState(event_id, event_type = 'offer_timed_out') AS s_timeouts,
    uniqExactIfState(event_id, event_type = 'transferred') AS s_transfers,
    argMaxIfState(event_type, seq, event_type IN ('resolved', 'released', 'abandoned')) AS s_outcome,
    minIfState(wait_ms, event_type IN ('resolved', 'released', 'abandoned')) AS s_closed_wait,
    minIfState(occurred_at_ms, event_type IN ('resolved', 'released', 'abandoned')) AS s_closed_at
FROM handoff_events
GROUP BY requested_at_ms, handoff_id;

-- Backfill: the handoffs of the events already stored, so an upgraded install keeps its history.
-- After the view exists, so nothing inserted meanwhile is missed; what both see counts once
-- anyway (idempotent states, as for a replayed batch), and so does a rerun of this migration
-- that failed half-way. Grouping spills to disk past 1 GB, so a long history fits in memory.
INSERT INTO handoff_summary
SELECT
    toUInt64(occurred_at_ms - least(wait_ms, occurred_at_ms)) AS requested_at_ms,
    handoff_id,
    anyState(conversation_id) AS s_conversation,
    anyState(channel) AS s_channel,
    anyState(reason) AS s_reason,
    argMinState(priority, seq) AS s_priority,
    argMaxState(team, seq) AS s_team,
    argMaxIfState(agent_id, seq, event_type = 'assigned') AS s_agent,
    maxIfState(toUInt8(1), event_type = 'requested') AS s_requested,
    minIfState(occurred_at_ms, event_type = 'requested') AS s_requested_at,
    argMaxState(event_type, seq) AS s_last,
    maxIfState(toUInt8(1), event_type = 'assigned') AS s_assigned,
    minIfState(wait_ms, event_type = 'assigned') AS s_assign_wait,
    maxIfState(toUInt8(1), event_type = 'first_agent_reply') AS s_replied,
    minIfState(wait_ms, event_type = 'first_agent_reply') AS s_reply_wait,
    maxIfState(toUInt8(1), event_type = 'accepted') AS s_accepted,
    minIfState(wait_ms, event_type = 'accepted') AS s_accept_wait,
    groupUniqArrayIfState(wait_ms, event_type = 'offered') AS s_offer_waits,
    uniqExactIfState(event_id, event_type = 'offered') AS s_offers,
    uniqExactIfState(event_id, event_type = 'declined') AS s_declines,
    uniqExactIfState(event_id, event_type = 'offer_timed_out') AS s_timeouts,
    uniqExactIfState(event_id, event_type = 'transferred') AS s_transfers,
    argMaxIfState(event_type, seq, event_type IN ('resolved', 'released', 'abandoned')) AS s_outcome,
    minIfState(wait_ms, event_type IN ('resolved', 'released', 'abandoned')) AS s_closed_wait,
    minIfState(occurred_at_ms, event_type IN ('resolved', 'released', 'abandoned')) AS s_closed_at
FROM handoff_events
GROUP BY requested_at_ms, handoff_id
SETTINGS max_bytes_before_external_group_by = 1000000000;
