-- A re-handoff is decided by another handoff: a release counts as one when its conversation
-- asks for a person again within 24 hours. So when requests arrive (in hours touched by an
-- INSERT since since_s), the hours of the released handoffs they make re-handoffs are touched
-- too (cause 1), and the rollup computes them again; until then the report merges them from
-- the handoffs. Only cause-0 touches are followed, so this never feeds itself.
-- params: since_s, since_s, since_s
INSERT INTO handoff_touches
SELECT DISTINCT
    intDiv(toUInt64(closed_at - least(wait_ms, closed_at)), 3600000) * 3600000 AS hour_ms,
    toUInt8(1) AS cause,
    now() AS touched_at
FROM
(
    SELECT conversation_id, occurred_at_ms AS closed_at, wait_ms
    FROM handoff_events
    WHERE event_type = 'released'
        AND occurred_at >= toDateTime(greatest(intDiv((
            SELECT min(hour_ms) FROM handoff_touches WHERE cause = 0 AND touched_at >= toDateTime(?)
        ), 1000), 90000) - 90000)
) AS releases
ANY INNER JOIN
(
    SELECT conversation_id, groupArray(occurred_at_ms) AS r_requests
    FROM handoff_events
    WHERE event_type = 'requested'
        AND occurred_at >= toDateTime(intDiv((
            SELECT min(hour_ms) FROM handoff_touches WHERE cause = 0 AND touched_at >= toDateTime(?)
        ), 1000))
        AND intDiv(occurred_at_ms, 3600000) * 3600000 IN
        (
            SELECT hour_ms FROM handoff_touches WHERE cause = 0 AND touched_at >= toDateTime(?)
        )
    GROUP BY conversation_id
) AS requests USING conversation_id
WHERE arrayExists((t, c) -> t > c AND t <= c + 86400000, r_requests,
    arrayResize([closed_at], length(r_requests), closed_at))
