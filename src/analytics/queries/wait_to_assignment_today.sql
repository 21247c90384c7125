-- Tickets first offered to an agent since midnight, and the median wait from request to that
-- first offer, in milliseconds (quantileExact: for an even count, the upper of the two middle
-- values; nan when none). A ticket offered again after a decline counts once, at its first.
SELECT
    count() AS assigned,
    if(count() = 0, nan, toFloat64(quantileExact(0.5)(first_wait))) AS median_wait
FROM
(
    SELECT handoff_id, min(wait_ms) AS first_wait
    FROM handoff_events FINAL
    WHERE event_type = 'offered' AND occurred_at >= toStartOfDay(now())
    GROUP BY handoff_id
)
