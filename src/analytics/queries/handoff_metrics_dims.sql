-- The covered hours of a report without an attribute filter, per report row (dimension 'all'
-- with key '', or channel, team, agent, reason or priority and a value): the chosen versions
-- of their spans (rollup_covered.sql; covered_spans: their keys, after a 0 that names
-- nothing) from the rollup per row (handoff_rollup_dims, migrations/clickhouse/0005): counts
-- summed, the handoffs per time bucket for the 'reason' rows and per weekday and hour for the
-- 'all' row (as in handoff_metrics.sql), and each kind of duration as counts per bucket from
-- bucket 0 (src/analytics/histogram.rs; stored without leading zeros, put back here). The
-- caller adds handoff_metrics.sql's combinations (the hours not covered) to these rows.
-- params: bucket_ms, bucket_ms, bucket_ms, bucket_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, covered_spans
SELECT
    dimension,
    key,
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
    -- (the same sumMap twice is computed once)
    tupleElement(sumMapIf(arrayMap((i, s) -> intDiv(s + i * 3600000, ?) * ?, range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours, dimension = 'reason'), 1) AS bucket_starts,
    tupleElement(sumMapIf(arrayMap((i, s) -> intDiv(s + i * 3600000, ?) * ?, range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours, dimension = 'reason'), 2) AS bucket_counts,
    tupleElement(sumMapIf(arrayMap((i, s) -> toUInt16(((intDiv(s + i * 3600000, 86400000) + 3) % 7 + 1) * 100
        + intDiv((s + i * 3600000) % 86400000, 3600000)), range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours, dimension = 'all'), 1) AS heat_cells,
    tupleElement(sumMapIf(arrayMap((i, s) -> toUInt16(((intDiv(s + i * 3600000, 86400000) + 3) % 7 + 1) * 100
        + intDiv((s + i * 3600000) % 86400000, 3600000)), range(length(c_hours)),
        arrayResize([start_ms], length(c_hours), start_ms)), c_hours, dimension = 'all'), 2) AS heat_counts,
    sumForEach(arrayConcat(arrayResize(emptyArrayUInt32(), lo_assign_wait), h_assign_wait)) AS assign_wait_hist,
    sumForEach(arrayConcat(arrayResize(emptyArrayUInt32(), lo_reply_wait), h_reply_wait)) AS reply_wait_hist,
    sumForEach(arrayConcat(arrayResize(emptyArrayUInt32(), lo_accept), h_accept)) AS accept_hist,
    sumForEach(arrayConcat(arrayResize(emptyArrayUInt32(), lo_handle), h_handle)) AS handle_hist
FROM handoff_rollup_dims
PREWHERE sla_assignment_ms = ? AND sla_first_reply_ms = ?
    AND start_ms >= ? AND start_ms < ?
    AND cityHash64(span_ms, start_ms, version) IN (SELECT toUInt64(arrayJoin(?)))
GROUP BY dimension, key
