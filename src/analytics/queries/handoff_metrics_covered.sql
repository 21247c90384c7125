-- The covered hours of a report filtered by an attribute, per combination of the five
-- attributes: the chosen versions (rollup_covered.sql; covered_spans: their keys, after a 0
-- that names nothing) of their spans from the rollup (handoff_rollup, migrations/clickhouse/
-- 0005), in the columns of handoff_metrics.sql (which reads the hours not covered), each
-- span's handoffs in the buckets and heat cells of their hours. Unfiltered reports read
-- handoff_metrics_dims.sql instead.
-- params: bucket_ms, bucket_ms, bucket_ms, bucket_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, covered_spans, channel, channel, team, team, agent, agent, reason, reason, priority, priority
SELECT
    channel AS h_channel, team AS h_team, agent AS h_agent, reason AS h_reason,
    priority AS h_priority,
    sum(c_requested) AS u_requested,
    sum(c_assigned) AS u_assigned,
    sum(c_replied) AS u_replied,
    sum(c_accepted) AS u_accepted,
    sum(c_handled) AS u_handled,
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
    groupArrayArray(q_hist) AS u_hist,
    tupleElement(sumMap(arrayMap((i, s) -> intDiv(s + i * 3600000, ?) * ?, range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours), 1) AS u_bucket_starts,
    tupleElement(sumMap(arrayMap((i, s) -> intDiv(s + i * 3600000, ?) * ?, range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours), 2) AS u_bucket_counts,
    tupleElement(sumMap(arrayMap((i, s) -> toUInt16(((intDiv(s + i * 3600000, 86400000) + 3) % 7 + 1) * 100
        + intDiv((s + i * 3600000) % 86400000, 3600000)), range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours), 1) AS u_heat_cells,
    tupleElement(sumMap(arrayMap((i, s) -> toUInt16(((intDiv(s + i * 3600000, 86400000) + 3) % 7 + 1) * 100
        + intDiv((s + i * 3600000) % 86400000, 3600000)), range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours), 2) AS u_heat_counts
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
