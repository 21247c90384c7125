-- Every period figure, for all handoffs of the period (dimension 'all') and broken down by
-- channel, team, agent, reason and priority: one scan for the whole summary. Percentiles are
-- exact (quantilesExact: the value at index floor(level * n) of the sorted values).
-- params: now_ms, now_ms, sla_assignment_ms, sla_first_reply_ms, from_s, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority, from_s
SELECT
    tupleElement(d, 1) AS dimension,
    tupleElement(d, 2) AS key,
    count() AS requested,
    countIf(h_assigned) AS assigned,
    arrayMap(x -> toUInt64(x), quantilesExactIf(0.5, 0.9, 0.99)(h_assign_wait, h_assigned)) AS assign_wait_q,
    countIf(h_replied) AS replied,
    arrayMap(x -> toUInt64(x), quantilesExactIf(0.5, 0.9, 0.99)(h_reply_wait, h_replied)) AS reply_wait_q,
    countIf(h_accepted) AS accepted,
    arrayMap(x -> toUInt64(x), quantilesExactIf(0.5, 0.9, 0.99)(h_accept_ms, h_accepted)) AS accept_q,
    countIf(h_handled) AS handled,
    arrayMap(x -> toUInt64(x), quantilesExactIf(0.5, 0.9, 0.99)(h_handle_ms, h_handled)) AS handle_q,
    countIf(h_outcome = 'resolved') AS resolved,
    countIf(h_outcome = 'released') AS released,
    countIf(h_outcome = 'abandoned') AS abandoned,
    countIf(h_outcome = '') AS open,
    countIf(h_outcome = '' AND NOT h_assigned) AS waiting,
    countIf(h_offers > 0) AS offered,
    countIf(h_offers > 1) AS reoffered,
    sum(h_offers) AS offers,
    sum(h_declines) AS declines,
    sum(h_timeouts) AS offer_timeouts,
    sum(h_transfers) AS transfers,
    countIf(h_transfers > 0) AS transferred,
    countIf(h_rehandoff) AS rehandoffs,
    countIf(h_sla_assign_breached) AS sla_assignment_breaches,
    countIf(h_sla_reply_breached) AS sla_first_reply_breaches
FROM
(
    SELECT
        *,
        arrayJoin([('all', ''), ('channel', h_channel), ('team', h_team), ('agent', h_agent),
                   ('reason', h_reason), ('priority', h_priority)]) AS d
    FROM
    (
    -- derived:begin  Per handoff, what the figures need: time to accept (from the offer that
    -- was accepted), handle time, the wait so far against each SLA target (until assignment
    -- or first reply; for a ticket that closed without one, until it closed; for one still
    -- open, until now), and whether a release was followed by a new request of the same
    -- conversation within 24 hours. (Lambdas take every value as an argument: 18.16 drops
    -- columns that a lambda only captures.)
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
        -- checks it). Attributes: the channel and reason never change; the priority is the
        -- one it was requested with; the team is the last one it was in (`general` for the
        -- general queue, which events name ''); the agent is the last one who owned it
        -- (empty if nobody did).
        SELECT
            handoff_id AS h_id,
            any(conversation_id) AS h_conversation,
            any(channel) AS h_channel,
            any(reason) AS h_reason,
            argMin(priority, seq) AS h_priority,
            argMax(team, seq) AS h_last_team,
            if(h_last_team = '', 'general', h_last_team) AS h_team,
            argMaxIf(agent_id, seq, event_type = 'assigned') AS h_agent,
            minIf(occurred_at_ms, event_type = 'requested') AS h_requested_at,
            argMax(event_type, seq) AS h_last,
            countIf(event_type = 'assigned') > 0 AS h_assigned,
            minIf(wait_ms, event_type = 'assigned') AS h_assign_wait,
            countIf(event_type = 'first_agent_reply') > 0 AS h_replied,
            minIf(wait_ms, event_type = 'first_agent_reply') AS h_reply_wait,
            countIf(event_type = 'accepted') > 0 AS h_accepted,
            minIf(wait_ms, event_type = 'accepted') AS h_accept_wait,
            groupArrayIf(wait_ms, event_type = 'offered') AS h_offer_waits,
            countIf(event_type = 'offered') AS h_offers,
            countIf(event_type = 'declined') AS h_declines,
            countIf(event_type = 'offer_timed_out') AS h_timeouts,
            countIf(event_type = 'transferred') AS h_transfers,
            argMaxIf(event_type, seq, event_type IN ('resolved', 'released', 'abandoned')) AS h_outcome,
            minIf(wait_ms, event_type IN ('resolved', 'released', 'abandoned')) AS h_closed_wait,
            minIf(occurred_at_ms, event_type IN ('resolved', 'released', 'abandoned')) AS h_closed_at
        FROM handoff_events FINAL
        WHERE occurred_at >= toDateTime(?)
        GROUP BY handoff_id
        HAVING countIf(event_type = 'requested') > 0
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
        FROM handoff_events FINAL
        WHERE event_type = 'requested' AND occurred_at >= toDateTime(?)
        GROUP BY conversation_id
    ) AS requests USING h_conversation
    -- derived:end
    )
)
GROUP BY dimension, key
ORDER BY dimension, requested DESC, key
