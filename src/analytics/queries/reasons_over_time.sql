-- Handoffs requested per time bucket (minute, hour or day, chosen by the period's length;
-- buckets are aligned to the epoch, so days start at midnight UTC) and reason.
-- params: bucket_ms, bucket_ms, from_s, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority
SELECT
    intDiv(h_requested_at, ?) * ? AS bucket_start_ms,
    h_reason AS reason,
    count() AS count
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
)
GROUP BY bucket_start_ms, reason
ORDER BY bucket_start_ms, reason
