-- The handoffs behind a figure (the drill-down), newest request first: each handoff of the
-- period with the tags of the figures it counts in; the caller asks for one tag.
-- params: now_ms, now_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority, from_s, from_s, drill, limit
SELECT
    h_id AS handoff_id,
    h_conversation AS conversation_id,
    h_channel AS channel,
    h_team AS team,
    h_agent AS agent_id,
    h_reason AS reason,
    h_priority AS priority,
    h_requested_at AS requested_at_ms,
    h_assign_so_far AS wait_to_assignment_ms,
    h_reply_so_far AS wait_to_first_reply_ms,
    h_assigned AS was_assigned,
    h_last AS last_status,
    h_outcome AS outcome,
    h_transfers AS transfers,
    h_offers AS offers
FROM
(
    SELECT
        *,
        arrayFilter(x -> x != '', [
            'requested',
            if(h_assigned, 'assigned', ''),
            if(h_outcome = '' AND NOT h_assigned, 'waiting', ''),
            if(h_outcome = '', 'open', ''),
            if(h_outcome = 'resolved', 'resolved', ''),
            if(h_outcome = 'released', 'released', ''),
            if(h_outcome = 'abandoned', 'abandoned', ''),
            if(h_offers > 1, 'reoffered', ''),
            if(h_declines > 0, 'declined', ''),
            if(h_timeouts > 0, 'offer_timed_out', ''),
            if(h_transfers > 0, 'transferred', ''),
            if(h_rehandoff, 'rehandoff', ''),
            if(h_sla_assign_breached OR h_sla_reply_breached, 'sla_breached', ''),
            if(h_sla_assign_breached, 'sla_assignment_breached', ''),
            if(h_sla_reply_breached, 'sla_first_reply_breached', '')
        ]) AS tags
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
)
WHERE has(tags, ?)
ORDER BY requested_at_ms DESC, handoff_id
LIMIT ?
