-- The UTC days the rollup should merge from their hours now: every touched hour of the day is
-- covered by a version computed after its latest touch (an hour never touched has no
-- handoffs), the day is past both SLA targets at now_ms, and the day has no committed version
-- computed after the latest touch of its hours.
-- params: sla_assignment_ms, sla_first_reply_ms, sla_assignment_ms, sla_first_reply_ms, sla_assignment_ms, sla_first_reply_ms, now_ms
SELECT day_ms
FROM
(
    SELECT
        intDiv(hour_ms, 86400000) * 86400000 AS day_ms,
        min(latest_snapshot_at > touched_at + 5) AS hours_covered,
        max(touched_at) AS day_touched_at
    FROM
    (
        SELECT hour_ms, max(touched_at) AS touched_at
        FROM handoff_touches
        GROUP BY hour_ms
    ) AS touches
    ANY LEFT JOIN
    (
        SELECT start_ms AS hour_ms, argMax(snapshot_at, version) AS latest_snapshot_at
        FROM handoff_rollup_commits
        WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = 3600000
        GROUP BY start_ms
    ) AS commits USING hour_ms
    GROUP BY day_ms
) AS days
ANY LEFT JOIN
(
    SELECT start_ms AS day_ms, argMax(snapshot_at, version) AS day_snapshot_at
    FROM handoff_rollup_commits
    WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = 86400000
    GROUP BY start_ms
) AS day_commits USING day_ms
WHERE hours_covered = 1
    AND day_ms + 86400000 + greatest(?, ?) < ?
    AND day_snapshot_at <= day_touched_at + 5
ORDER BY day_ms
