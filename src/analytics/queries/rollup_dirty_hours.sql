-- The hours the rollup should compute now: touched after their latest committed version (or
-- without one), past both SLA targets at now_ms (so nothing in them changes with time), and
-- quiet for a few seconds at snapshot_s (a version computed now must count: its snapshot must
-- be more than 5 s after the latest touch, see handoff_metrics.sql).
-- params: sla_assignment_ms, sla_first_reply_ms, sla_assignment_ms, sla_first_reply_ms, now_ms, snapshot_s
SELECT hour_ms
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
WHERE hour_ms + 3600000 + greatest(?, ?) < ?
    AND toUInt32(touched_at) + 6 <= ?
    AND latest_snapshot_at <= touched_at + 5
ORDER BY hour_ms
