-- The outbox without the unique index on event_id. Nothing looks an event up by its id, each
-- event gets a fresh UUID, and ClickHouse deduplicates on it anyway; but the index (random
-- keys) made every acknowledgement rewrite most of its pages: deleting 5,000 shipped events
-- cost about six times as much with it as without it. SQLite cannot drop a constraint, so the
-- table is rebuilt.
CREATE TABLE event_outbox_new (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO event_outbox_new (seq, event_id, payload, created_at)
    SELECT seq, event_id, payload, created_at FROM event_outbox;
-- Positions are never reused, even with the outbox empty: the dead letters are keyed by them.
-- Dropping the old table forgets its counter, so the new one takes it over first (the rename
-- below carries it along).
DELETE FROM sqlite_sequence WHERE name = 'event_outbox_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'event_outbox_new', seq FROM sqlite_sequence WHERE name = 'event_outbox';
DROP TABLE event_outbox;
ALTER TABLE event_outbox_new RENAME TO event_outbox;
