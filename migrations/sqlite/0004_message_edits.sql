-- A customer's edit (Telegram, WhatsApp) changes the message's text; the earlier texts stay here.
CREATE TABLE message_edits (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    old_text    TEXT NOT NULL,
    edited_at   INTEGER NOT NULL
);
CREATE INDEX message_edits_by_message ON message_edits(message_id, edited_at);
-- Delivery receipts find Baton's own messages by the platform's id for them.
CREATE INDEX messages_outbound_external ON messages(channel, external_id)
    WHERE direction = 'out' AND external_id IS NOT NULL;
