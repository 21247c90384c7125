-- Handoffs requested in the last 5, 15 and 60 minutes before now.
-- params: now_ms, now_ms, now_ms, since_s
SELECT
    countIf(occurred_at_ms >= ? - 300000) AS last_5m,
    countIf(occurred_at_ms >= ? - 900000) AS last_15m,
    countIf(occurred_at_ms >= ? - 3600000) AS last_60m
FROM handoff_events FINAL
WHERE event_type = 'requested' AND occurred_at >= toDateTime(?)
