-- Every period figure, for all handoffs of the period (dimension 'all') and broken down by
-- channel, team, agent, reason and priority, with the handoffs per time bucket (the chart of
-- reasons over time reads the 'reason' rows) and per weekday and hour (the heatmap reads the
-- 'all' row). First per combination of the five attributes (few rows even for millions of
-- handoffs: counts, the percentiles' values as quantilesExact states, the buckets as sumMap
-- states), then each combination counts in its six rows ('all' and one per dimension), merged
-- there. Percentiles are exact (quantilesExact: the value at index floor(level * n) of the
-- sorted values; merging states concatenates the values, so the result is the same as over the
-- handoffs directly). Buckets start at multiples of bucket_ms since the epoch (days at midnight
-- UTC); heat cells are weekday * 100 + hour, weekday 1 = Monday ... 7 = Sunday, UTC, from
-- epoch milliseconds (1970-01-01 was a Thursday), so no server time zone is involved. Buckets
-- are merged for the 'reason' rows only and heat cells for the 'all' row (all the report
-- reads: merging maps is costly on 18.16); sums over the rollup may hold buckets and cells
-- of 0, which the caller leaves out.
--
-- The combinations come from two disjoint sets of request hours of the period:
-- - covered hours (covered_hours), read from the rollup (migrations/clickhouse/0004, filled
--   by src/analytics/rollup.rs), each from the version of the span rollup_covered.sql chose
--   for it (covered_spans: their keys); the caller runs that query first, each list starts
--   with a 0 that names nothing;
-- - every other hour (the period's ragged ends, the last hours, hours with a change the
--   rollup has not caught up with), merged from the handoffs' states as before.
-- The rollup holds the same counts and states, computed by the same text (the blocks between
-- the markers, in rollup_refresh.sql), so the union is the same as merging every handoff.
-- params: bucket_ms, bucket_ms, now_ms, now_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, covered_hours, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority, from_s, from_s, bucket_ms, bucket_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, covered_spans, channel, channel, team, team, agent, agent, reason, reason, priority, priority
SELECT
    tupleElement(d, 1) AS dimension,
    tupleElement(d, 2) AS key,
    sum(c_requested) AS requested,
    sum(c_assigned) AS assigned,
    arrayMap(x -> toUInt64(x), quantilesExactIfMerge(0.5, 0.9, 0.99)(q_assign_wait)) AS assign_wait_q,
    sum(c_replied) AS replied,
    arrayMap(x -> toUInt64(x), quantilesExactIfMerge(0.5, 0.9, 0.99)(q_reply_wait)) AS reply_wait_q,
    sum(c_accepted) AS accepted,
    arrayMap(x -> toUInt64(x), quantilesExactIfMerge(0.5, 0.9, 0.99)(q_accept)) AS accept_q,
    sum(c_handled) AS handled,
    arrayMap(x -> toUInt64(x), quantilesExactIfMerge(0.5, 0.9, 0.99)(q_handle)) AS handle_q,
    sum(c_resolved) AS resolved,
    sum(c_released) AS released,
    sum(c_abandoned) AS abandoned,
    sum(c_open) AS open,
    sum(c_waiting) AS waiting,
    sum(c_offered) AS offered,
    sum(c_reoffered) AS reoffered,
    sum(c_offers) AS offers,
    sum(c_declines) AS declines,
    sum(c_offer_timeouts) AS offer_timeouts,
    sum(c_transfers) AS transfers,
    sum(c_transferred) AS transferred,
    sum(c_rehandoffs) AS rehandoffs,
    sum(c_sla_assignment_breaches) AS sla_assignment_breaches,
    sum(c_sla_first_reply_breaches) AS sla_first_reply_breaches,
    tupleElement(sumMapMergeIf(m_buckets, tupleElement(d, 1) = 'reason'), 1) AS bucket_starts,
    tupleElement(sumMapMergeIf(m_buckets, tupleElement(d, 1) = 'reason'), 2) AS bucket_counts,
    tupleElement(sumMapMergeIf(m_heat, tupleElement(d, 1) = 'all'), 1) AS heat_cells,
    tupleElement(sumMapMergeIf(m_heat, tupleElement(d, 1) = 'all'), 2) AS heat_counts
FROM
(
    SELECT
        *,
        arrayJoin([('all', ''), ('channel', h_channel), ('team', h_team), ('agent', h_agent),
                   ('reason', h_reason), ('priority', h_priority)]) AS d
    FROM
    (
        -- The hours not covered: from the handoffs.
        SELECT
            h_channel, h_team, h_agent, h_reason, h_priority,
            -- counts:begin
            count() AS c_requested,
            countIf(h_assigned) AS c_assigned,
            quantilesExactIfState(0.5, 0.9, 0.99)(h_assign_wait, h_assigned) AS q_assign_wait,
            countIf(h_replied) AS c_replied,
            quantilesExactIfState(0.5, 0.9, 0.99)(h_reply_wait, h_replied) AS q_reply_wait,
            countIf(h_accepted) AS c_accepted,
            quantilesExactIfState(0.5, 0.9, 0.99)(h_accept_ms, h_accepted) AS q_accept,
            countIf(h_handled) AS c_handled,
            quantilesExactIfState(0.5, 0.9, 0.99)(h_handle_ms, h_handled) AS q_handle,
            countIf(h_outcome = 'resolved') AS c_resolved,
            countIf(h_outcome = 'released') AS c_released,
            countIf(h_outcome = 'abandoned') AS c_abandoned,
            countIf(h_outcome = '') AS c_open,
            countIf(h_outcome = '' AND NOT h_assigned) AS c_waiting,
            countIf(h_offers > 0) AS c_offered,
            countIf(h_offers > 1) AS c_reoffered,
            sum(h_offers) AS c_offers,
            sum(h_declines) AS c_declines,
            sum(h_timeouts) AS c_offer_timeouts,
            sum(h_transfers) AS c_transfers,
            countIf(h_transfers > 0) AS c_transferred,
            countIf(h_rehandoff) AS c_rehandoffs,
            countIf(h_sla_assign_breached) AS c_sla_assignment_breaches,
            countIf(h_sla_reply_breached) AS c_sla_first_reply_breaches,
            -- counts:end
            sumMapState([intDiv(h_requested_at, ?) * ?], [toUInt64(1)]) AS m_buckets,
            sumMapState([toUInt16(((intDiv(h_requested_at, 86400000) + 3) % 7 + 1) * 100
                + intDiv(h_requested_at % 86400000, 3600000))], [toUInt64(1)]) AS m_heat
        FROM
        (
    -- derived:begin  Per handoff, what the figures need: time to accept (from the offer that
    -- was accepted), handle time, the wait so far against each SLA target (until assignment
    -- or first reply; for a ticket that closed without one, until it closed; for one still
    -- open, until now), and whether a release was followed by a new request of the same
    -- conversation within 24 hours. (Lambdas take every value as an argument: 18.16 drops
    -- columns that a lambda only captures.) The requests come from the raw events, only for
    -- conversations with a release since the period began (the others cannot be re-handoffs),
    -- without FINAL: a request counted twice changes nothing in arrayExists.
    SELECT
        h_id, h_conversation, h_channel, h_reason, h_priority, h_team, h_agent, h_requested_at,
        h_last, h_assigned, h_assign_wait, h_replied, h_reply_wait, h_accepted, h_offers,
        h_declines, h_timeouts, h_transfers, h_outcome, h_closed_at,
        toUInt64(h_accept_wait - arrayReduce('max', arrayFilter((w, a) -> w <= a, h_offer_waits,
            arrayResize([h_accept_wait], length(h_offer_waits), h_accept_wait)))) AS h_accept_ms,
        h_assigned AND h_outcome IN ('resolved', 'released') AS h_handled,
        toUInt64(h_closed_wait - h_assign_wait) AS h_handle_ms,
        if(h_assigned, h_assign_wait, if(h_outcome != '', h_closed_wait, toUInt64(greatest(?, h_requested_at) - h_requested_at))) AS h_assign_so_far,
        if(h_replied, h_reply_wait, if(h_outcome != '', h_closed_wait, toUInt64(greatest(?, h_requested_at) - h_requested_at))) AS h_reply_so_far,
        h_assign_so_far > ? AS h_sla_assign_breached,
        h_reply_so_far > ? AS h_sla_reply_breached,
        h_outcome = 'released' AND arrayExists((t, c) -> t > c AND t <= c + 86400000, r_requests,
            arrayResize([h_closed_at], length(r_requests), h_closed_at)) AS h_rehandoff
    FROM
    (
        -- base:begin  One row per handoff requested in the period that matches the filters.
        -- The same text is in every report query that starts from handoffs (a unit test
        -- checks it). Read from handoff_summary (migrations/clickhouse/0003): a handoff's
        -- aggregate states, fed by a materialized view from handoff_events; all of them are
        -- idempotent, so a batch inserted twice counts once, and they are merged here because
        -- rows of one handoff from different INSERTs may not be merged yet. The table is
        -- ordered by request time, so the period prunes it. Attributes: the channel and reason
        -- never change; the priority is the one it was requested with; the team is the last
        -- one it was in (`general` for the general queue, which events name ''); the agent is
        -- the last one who owned it (empty if nobody did).
        SELECT
            handoff_id AS h_id,
            anyMerge(s_conversation) AS h_conversation,
            anyMerge(s_channel) AS h_channel,
            anyMerge(s_reason) AS h_reason,
            argMinMerge(s_priority) AS h_priority,
            argMaxMerge(s_team) AS h_last_team,
            if(h_last_team = '', 'general', h_last_team) AS h_team,
            argMaxIfMerge(s_agent) AS h_agent,
            minIfMerge(s_requested_at) AS h_requested_at,
            argMaxMerge(s_last) AS h_last,
            maxIfMerge(s_assigned) = 1 AS h_assigned,
            minIfMerge(s_assign_wait) AS h_assign_wait,
            maxIfMerge(s_replied) = 1 AS h_replied,
            minIfMerge(s_reply_wait) AS h_reply_wait,
            maxIfMerge(s_accepted) = 1 AS h_accepted,
            minIfMerge(s_accept_wait) AS h_accept_wait,
            groupUniqArrayIfMerge(s_offer_waits) AS h_offer_waits,
            uniqExactIfMerge(s_offers) AS h_offers,
            uniqExactIfMerge(s_declines) AS h_declines,
            uniqExactIfMerge(s_timeouts) AS h_timeouts,
            uniqExactIfMerge(s_transfers) AS h_transfers,
            argMaxIfMerge(s_outcome) AS h_outcome,
            minIfMerge(s_closed_wait) AS h_closed_wait,
            minIfMerge(s_closed_at) AS h_closed_at
        FROM handoff_summary
        -- where:begin  (only the hours the rollup does not cover)
        PREWHERE requested_at_ms >= ? AND requested_at_ms < ?
            AND intDiv(requested_at_ms, 3600000) * 3600000 NOT IN (SELECT toUInt64(arrayJoin(?)))
        -- where:end
        GROUP BY handoff_id
        HAVING maxIfMerge(s_requested) = 1
            AND h_requested_at >= ? AND h_requested_at < ?
            AND (? = '' OR h_channel = ?)
            AND (? = '' OR h_team = ?)
            AND (? = '' OR h_agent = ?)
            AND (? = '' OR h_reason = ?)
            AND (? = '' OR h_priority = ?)
        -- base:end
    ) AS handoffs
    ANY LEFT JOIN
    (
        SELECT conversation_id AS h_conversation, groupArray(occurred_at_ms) AS r_requests
        FROM handoff_events
        WHERE event_type = 'requested' AND occurred_at >= toDateTime(?)
            AND conversation_id IN
            (
                SELECT conversation_id
                FROM handoff_events
                WHERE event_type = 'released' AND occurred_at >= toDateTime(?)
            )
        GROUP BY conversation_id
    ) AS requests USING h_conversation
    -- derived:end
        )
        GROUP BY h_channel, h_team, h_agent, h_reason, h_priority

        UNION ALL

        -- The covered hours: the chosen versions of their spans from the rollup, each span's
        -- handoffs in the buckets and heat cells of their hours.
        SELECT
            channel AS h_channel, team AS h_team, agent AS h_agent, reason AS h_reason,
            priority AS h_priority,
            sum(c_requested) AS u_requested,
            sum(c_assigned) AS u_assigned,
            quantilesExactIfMergeState(0.5, 0.9, 0.99)(q_assign_wait) AS u_assign_wait,
            sum(c_replied) AS u_replied,
            quantilesExactIfMergeState(0.5, 0.9, 0.99)(q_reply_wait) AS u_reply_wait,
            sum(c_accepted) AS u_accepted,
            quantilesExactIfMergeState(0.5, 0.9, 0.99)(q_accept) AS u_accept,
            sum(c_handled) AS u_handled,
            quantilesExactIfMergeState(0.5, 0.9, 0.99)(q_handle) AS u_handle,
            sum(c_resolved) AS u_resolved,
            sum(c_released) AS u_released,
            sum(c_abandoned) AS u_abandoned,
            sum(c_open) AS u_open,
            sum(c_waiting) AS u_waiting,
            sum(c_offered) AS u_offered,
            sum(c_reoffered) AS u_reoffered,
            sum(c_offers) AS u_offers,
            sum(c_declines) AS u_declines,
            sum(c_offer_timeouts) AS u_offer_timeouts,
            sum(c_transfers) AS u_transfers,
            sum(c_transferred) AS u_transferred,
            sum(c_rehandoffs) AS u_rehandoffs,
            sum(c_sla_assignment_breaches) AS u_sla_assignment_breaches,
            sum(c_sla_first_reply_breaches) AS u_sla_first_reply_breaches,
            sumMapState(arrayMap((i, s) -> intDiv(s + i * 3600000, ?) * ?, range(length(c_hours)),
                arrayResize([start_ms], length(c_hours), start_ms)), c_hours) AS u_buckets,
            sumMapState(arrayMap((i, s) -> toUInt16(((intDiv(s + i * 3600000, 86400000) + 3) % 7 + 1) * 100
                + intDiv((s + i * 3600000) % 86400000, 3600000)), range(length(c_hours)),
                arrayResize([start_ms], length(c_hours), start_ms)), c_hours) AS u_heat
        FROM handoff_rollup
        PREWHERE sla_assignment_ms = ? AND sla_first_reply_ms = ?
            AND start_ms >= ? AND start_ms < ?
            AND cityHash64(span_ms, start_ms, version) IN (SELECT toUInt64(arrayJoin(?)))
        WHERE (? = '' OR h_channel = ?)
            AND (? = '' OR h_team = ?)
            AND (? = '' OR h_agent = ?)
            AND (? = '' OR h_reason = ?)
            AND (? = '' OR h_priority = ?)
        GROUP BY h_channel, h_team, h_agent, h_reason, h_priority
    )
)
GROUP BY dimension, key
ORDER BY dimension, requested DESC, key
