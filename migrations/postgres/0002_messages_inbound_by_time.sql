-- Bot containment counts the conversations with a customer message in a report's period
-- (Store::conversation_activity). Without an index on time that walked every message ever
-- stored, on every report the cache did not hold (2,000,000 messages: 249 ms for one day);
-- this reads only the period's inbound messages (9 ms). Partial: outbound messages, half the
-- table, add nothing to it and cost their inserts nothing.
CREATE INDEX messages_inbound_by_time ON messages(created_at, channel, conversation_id)
    WHERE direction = 'in';
