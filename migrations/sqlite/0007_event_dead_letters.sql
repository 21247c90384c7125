-- Handoff events ClickHouse refused as bad data (or whose stored payload no longer parses).
-- They leave the outbox so they cannot block the events behind them, and stay here, payload
-- and all, for a person to inspect and replay: analytics may miss them, the store never does.
CREATE TABLE event_dead_letters (
    seq         INTEGER PRIMARY KEY,   -- its position in event_outbox
    event_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,         -- what ClickHouse (or the decoder) said, truncated
    created_at  INTEGER NOT NULL,      -- when the event was written (ms)
    failed_at   INTEGER NOT NULL       -- when it was set aside (ms)
);
