-- Merges the hourly rollup of whole UTC days in [from_ms, to_ms) into one row per day and
-- combination (a new version of each day): the latest committed version of each of its hours,
-- counts summed, histogram keys concatenated, c_hours set from each hour's count. The caller (src/analytics/rollup.rs)
-- only asks for days whose 24 hours are all covered by a version computed after their latest
-- touch, and records the day's version in handoff_rollup_commits once this INSERT is done.
-- params: sla_assignment_ms, sla_first_reply_ms, version, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms
INSERT INTO handoff_rollup
SELECT
    toUInt64(?) AS r_sla_assignment_ms,
    toUInt64(?) AS r_sla_first_reply_ms,
    toUInt64(86400000) AS r_span_ms,
    intDiv(start_ms, 86400000) * 86400000 AS r_start_ms,
    toUInt64(?) AS r_version,
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
    sumForEach(arrayMap((i, h, c) -> if(i = h, c, toUInt64(0)), range(24),
        arrayResize([toUInt64(intDiv(start_ms % 86400000, 3600000))], 24,
            toUInt64(intDiv(start_ms % 86400000, 3600000))),
        arrayResize([c_requested], 24, c_requested))) AS u_hours,
    channel, team, agent, reason, priority
FROM handoff_rollup
PREWHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = 3600000
    AND start_ms >= ? AND start_ms < ?
    AND (span_ms, start_ms, version) IN
    (
        SELECT span_ms, start_ms, max(version)
        FROM handoff_rollup_commits
        WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = 3600000
            AND start_ms >= ? AND start_ms < ?
        GROUP BY span_ms, start_ms
    )
GROUP BY r_start_ms, channel, team, agent, reason, priority
