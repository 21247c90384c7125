-- Every handoff step, one row per event. Runs on ClickHouse 18.16 and current releases:
-- no LowCardinality, no DateTime64, no TTL. Millisecond precision lives in occurred_at_ms.
--
-- ReplacingMergeTree on a key that ends in event_id: a batch shipped twice (at-least-once
-- delivery from the outbox) collapses to one row at merge time, and reports read with FINAL
-- so they never double count before merges happen.
CREATE TABLE IF NOT EXISTS handoff_events
(
    event_id         String,
    event_type       String,
    handoff_id       String,
    conversation_id  String,
    channel          String,
    reason           String,
    priority         String,
    agent_id         String,
    occurred_at      DateTime,
    occurred_at_ms   UInt64,
    wait_ms          UInt64,
    seq              UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (event_type, occurred_at, event_id);
