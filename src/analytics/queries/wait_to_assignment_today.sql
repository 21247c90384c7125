-- Assignments since midnight and the median wait from request to assignment, in milliseconds
-- (quantileExact: for an even count, the upper of the two middle values; nan when none).
SELECT
    count() AS assigned,
    if(count() = 0, nan, toFloat64(quantileExact(0.5)(wait_ms))) AS median_wait
FROM handoff_events FINAL
WHERE event_type = 'assigned' AND occurred_at >= toStartOfDay(now())
