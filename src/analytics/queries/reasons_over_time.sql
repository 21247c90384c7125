-- Handoffs requested per time bucket (minute, hour or day, chosen by the period's length;
-- buckets are aligned to the epoch, so days start at midnight UTC) and reason.
-- params: bucket_ms, bucket_ms, from_ms, to_ms, from_ms, to_ms, channel, channel, team, team, agent, agent, reason, reason, priority, priority
SELECT
    intDiv(h_requested_at, ?) * ? AS bucket_start_ms,
    h_reason AS reason,
    count() AS count
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
        WHERE requested_at_ms >= ? AND requested_at_ms < ?
        GROUP BY handoff_id
        HAVING maxIfMerge(s_requested) = 1
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
