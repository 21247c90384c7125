-- Tickets whose latest step leaves them waiting for a person: requested, queued, or back in the
-- queue after a decline, a lapsed offer or an overflow. Only tickets of the last 30 days can
-- still be waiting; the bound keeps the scan small.
SELECT count() AS queued
FROM
(
    SELECT handoff_id, argMax(event_type, seq) AS last_step
    FROM handoff_events FINAL
    WHERE occurred_at >= now() - 30 * 86400
    GROUP BY handoff_id
)
WHERE last_step IN ('requested', 'queued', 'declined', 'offer_timed_out', 'overflowed')
