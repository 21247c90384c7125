-- Computes the hourly rollup (migrations/clickhouse/0004) of the handoffs requested in
-- [from_ms, to_ms), whole hours, as one new version: per request hour and combination of the
-- five attributes, the same counts and exact-percentile states handoff_metrics.sql computes
-- from the handoffs (the blocks between the markers are the same text there), against the SLA
-- targets given and "now" = now_ms. The caller (src/analytics/rollup.rs) only asks for hours
-- whose every handoff is past both SLA targets at now_ms, so no figure of the version changes
-- with time; it records the version in handoff_rollup_commits once this INSERT is done.
-- params: sla_assignment_ms, sla_first_reply_ms, version, now_ms, now_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority, from_s, from_s
INSERT INTO handoff_rollup
SELECT
    toUInt64(?) AS r_sla_assignment_ms,
    toUInt64(?) AS r_sla_first_reply_ms,
    toUInt64(3600000) AS r_span_ms,
    intDiv(h_requested_at, 3600000) * 3600000 AS r_start_ms,
    toUInt64(?) AS r_version,
    -- counts:begin
    count() AS c_requested,
    countIf(h_assigned) AS c_assigned,
    countIf(h_replied) AS c_replied,
    countIf(h_accepted) AS c_accepted,
    countIf(h_handled) AS c_handled,
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
    groupArrayArray(h_hist) AS q_hist,
    -- counts:end
    [count()] AS c_hours,
    h_channel, h_team, h_agent, h_reason, h_priority
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
            arrayResize([h_closed_at], length(r_requests), h_closed_at)) AS h_rehandoff,
        -- One histogram key per duration the handoff has (src/analytics/histogram.rs): kind *
        -- 2048 + the duration's bucket, bucket = if(v < 1, 0, ceil(log(v) / log(1.02)) + 1).
        arrayFilter(k -> k < 65535, [
            if(h_assigned, toUInt16(if(h_assign_wait < 1, 0, least(2047, ceil(log(h_assign_wait) / log(1.02)) + 1))), toUInt16(65535)),
            if(h_replied, toUInt16(2048 + toUInt16(if(h_reply_wait < 1, 0, least(2047, ceil(log(h_reply_wait) / log(1.02)) + 1)))), toUInt16(65535)),
            if(h_accepted, toUInt16(4096 + toUInt16(if(h_accept_ms < 1, 0, least(2047, ceil(log(h_accept_ms) / log(1.02)) + 1)))), toUInt16(65535)),
            if(h_handled, toUInt16(6144 + toUInt16(if(h_handle_ms < 1, 0, least(2047, ceil(log(h_handle_ms) / log(1.02)) + 1)))), toUInt16(65535))]) AS h_hist
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
        -- where:begin
        WHERE requested_at_ms >= ? AND requested_at_ms < ?
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
GROUP BY r_start_ms, h_channel, h_team, h_agent, h_reason, h_priority
