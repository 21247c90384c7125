-- The email channel: threading signals, the original mail, attachments' bytes, IMAP import state.

-- Each email conversation's secret reply token: outbound mail sets Reply-To to
-- support+<token>@domain, and mail to that address belongs to the conversation.
ALTER TABLE conversations ADD COLUMN reply_token TEXT;
CREATE UNIQUE INDEX conversations_by_reply_token ON conversations(reply_token) WHERE reply_token IS NOT NULL;
-- The subject without Re:/Fwd:/ticket tags, lower-cased: the weakest threading signal.
ALTER TABLE conversations ADD COLUMN subject_key TEXT;
CREATE INDEX conversations_by_subject_key ON conversations(customer_id, channel, subject_key, updated_at DESC)
    WHERE subject_key IS NOT NULL;
-- A reply to a resolved conversation may start a new one linked to the old (configurable).
ALTER TABLE conversations ADD COLUMN previous_conversation_id TEXT REFERENCES conversations(id);

-- How an inbound email found its conversation (reply_address, in_reply_to, references, subject,
-- new), and whether it was an automated mail (auto_reply, bounce) that must not be answered.
ALTER TABLE messages ADD COLUMN thread_match TEXT;
ALTER TABLE messages ADD COLUMN automated TEXT;

-- Every Message-ID Baton received or sent, so In-Reply-To and References find the conversation.
CREATE TABLE email_message_ids (
    message_id       TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id),
    message_row      TEXT REFERENCES messages(id),
    direction        TEXT NOT NULL,
    -- The sender of an inbound mail: replies go back to the latest one.
    address          TEXT,
    created_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX email_message_ids_by_conversation ON email_message_ids(conversation_id, created_at);

-- The mail as received (the visible text is trimmed of quotes; nothing is thrown away).
CREATE TABLE email_originals (
    message_row  TEXT PRIMARY KEY REFERENCES messages(id),
    subject      TEXT,
    full_text    TEXT,
    raw          BLOB NOT NULL
);

-- Attachment bytes for channels that deliver files inline (email); others link to the platform.
CREATE TABLE attachment_blobs (
    id            TEXT PRIMARY KEY,
    message_row   TEXT NOT NULL REFERENCES messages(id),
    name          TEXT,
    content_type  TEXT NOT NULL,
    content_id    TEXT,
    inline        INTEGER NOT NULL DEFAULT 0,
    size          INTEGER NOT NULL,
    data          BLOB NOT NULL
);
CREATE INDEX attachment_blobs_by_message ON attachment_blobs(message_row);

-- The IMAP poller's position per mailbox: the highest UID imported under a UIDVALIDITY.
CREATE TABLE imap_positions (
    mailbox       TEXT NOT NULL,
    uid_validity  INTEGER NOT NULL,
    last_uid      INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid_validity)
);
