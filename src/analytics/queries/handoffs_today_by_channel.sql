-- Handoffs requested since midnight (server time zone, UTC in the shipped configs), per channel.
SELECT channel, count() AS handoffs
FROM handoff_events FINAL
WHERE event_type = 'requested' AND occurred_at >= toStartOfDay(now())
GROUP BY channel
ORDER BY handoffs DESC, channel
