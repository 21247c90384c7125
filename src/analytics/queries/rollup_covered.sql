-- The hours of [from_ms, to_ms) the rollup covers for a report, and the span each is read from:
-- per whole hour of the period, the longest span (its UTC day if the whole day lies in the
-- period, else the hour) whose latest committed version was computed after the latest touch
-- of each of its hours (5 s of slack: see migrations/clickhouse/0004), for these SLA targets,
-- and past both targets now (so no figure of it changes with time); none for minute buckets
-- (an hour is one bucket and one heat cell) or when use_rollup is 0 (the checks that compare
-- both ways). span_key names the span's version for handoff_metrics.sql.
-- params: sla_assignment_ms, sla_first_reply_ms, from_ms, to_ms, sla_assignment_ms, sla_first_reply_ms, now_ms, bucket_ms, use_rollup, from_ms, to_ms
SELECT hour_ms, cityHash64(c_span_ms, c_start_ms, c_version) AS span_key
FROM
(
    SELECT hour_ms, argMax(span_ms, span_ms) AS c_span_ms, argMax(start_ms, span_ms) AS c_start_ms,
        argMax(latest, span_ms) AS c_version
    FROM
    (
        SELECT span_ms, start_ms, latest,
            start_ms + 3600000 * arrayJoin(range(toUInt64(intDiv(span_ms, 3600000)))) AS hour_ms
        FROM
        (
            SELECT span_ms, start_ms, latest
            FROM
            (
                SELECT span_ms, start_ms, latest, latest_snapshot_at,
                    start_ms + 3600000 * arrayJoin(range(toUInt64(intDiv(span_ms, 3600000)))) AS hour_ms
                FROM
                (
                    SELECT span_ms, start_ms, max(version) AS latest,
                        argMax(snapshot_at, version) AS latest_snapshot_at
                    FROM handoff_rollup_commits
                    WHERE sla_assignment_ms = ? AND sla_first_reply_ms = ?
                        AND start_ms >= ? AND start_ms + span_ms <= ?
                        AND start_ms + span_ms + greatest(?, ?) < ?
                        AND ? >= 3600000 AND ? = 1
                    GROUP BY span_ms, start_ms
                )
            ) AS spans
            ANY LEFT JOIN
            (
                SELECT hour_ms, max(touched_at) AS touched_at
                FROM handoff_touches
                WHERE hour_ms >= ? AND hour_ms < ?
                GROUP BY hour_ms
            ) AS touches USING hour_ms
            GROUP BY span_ms, start_ms, latest
            HAVING min(latest_snapshot_at > touched_at + 5) = 1
        )
    )
    GROUP BY hour_ms
)
ORDER BY hour_ms
