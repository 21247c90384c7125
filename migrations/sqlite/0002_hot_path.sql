-- A new message changes its conversation: SQLite keeps updated_at current itself, which saves
-- the gateway one statement per message on the hot path.
CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
BEGIN
    UPDATE conversations SET updated_at = max(updated_at, NEW.created_at) WHERE id = NEW.conversation_id;
END;

-- The inbound message a reply answers. Storing a reply marks the inbound message handled in
-- the same statement (the trigger runs inside it), so a crash can never leave a message both
-- answered and waiting to be answered.
ALTER TABLE messages ADD COLUMN in_reply_to TEXT;

CREATE TRIGGER messages_mark_answered AFTER INSERT ON messages
WHEN NEW.in_reply_to IS NOT NULL
BEGIN
    UPDATE messages SET needs_processing = 0 WHERE id = NEW.in_reply_to;
END;

-- "The customer's newest open conversation on this channel" is asked for every inbound message.
-- With only (customer_id, channel, status), SQLite preferred walking the channel's index in
-- created_at order, which grows with every conversation; this index answers it directly.
DROP INDEX conversations_by_customer;
CREATE INDEX conversations_by_customer ON conversations(customer_id, channel, created_at DESC);

-- Teams an agent works in (JSON array of team tags), alongside skills.
ALTER TABLE agents ADD COLUMN teams TEXT NOT NULL DEFAULT '[]';

-- Agent addresses are unique regardless of case: Tess@example.com and tess@example.com are one
-- person signing in.
CREATE UNIQUE INDEX agents_email_nocase ON agents(email COLLATE NOCASE);
