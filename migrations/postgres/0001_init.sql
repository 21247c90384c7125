-- Baton's store on PostgreSQL: the schema of migrations/sqlite/0001..0009 as it stands, in one
-- file. Times are epoch milliseconds (BIGINT); ids are UUID text with the "C" collation, so they
-- sort byte-wise as in SQLite (UUIDv7 text order is time order); JSON documents are TEXT as
-- written, which keeps the row conversions shared with the SQLite backend.

CREATE TABLE customers (
    id            TEXT COLLATE "C" PRIMARY KEY,
    display_name  TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',
    created_at    BIGINT NOT NULL
);

-- One row per handle (email, phone, platform user id); the primary key makes a handle
-- belong to exactly one customer.
CREATE TABLE identities (
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    customer_id  TEXT COLLATE "C" NOT NULL REFERENCES customers(id),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_by_customer ON identities(customer_id);

CREATE TABLE agents (
    id                TEXT COLLATE "C" PRIMARY KEY,
    name              TEXT COLLATE "C" NOT NULL,
    email             TEXT NOT NULL UNIQUE,
    skills            TEXT NOT NULL DEFAULT '[]',
    teams             TEXT NOT NULL DEFAULT '[]',
    max_concurrent    BIGINT NOT NULL CHECK (max_concurrent >= 0),
    presence          TEXT NOT NULL,
    -- Round robin: the agent who was offered a ticket longest ago goes first.
    last_assigned_at  BIGINT NOT NULL DEFAULT 0,
    -- Capacity per kind of work ({"chat": 3, ...}) and working hours (JSON, NULL: always).
    capacity          TEXT NOT NULL DEFAULT '{}',
    hours             TEXT,
    created_at        BIGINT NOT NULL
);
-- Tess@example.com and tess@example.com are one person signing in.
CREATE UNIQUE INDEX agents_email_nocase ON agents(lower(email));

CREATE TABLE conversations (
    id                        TEXT COLLATE "C" PRIMARY KEY,
    channel                   TEXT NOT NULL,
    status                    TEXT NOT NULL,
    customer_id               TEXT COLLATE "C" NOT NULL REFERENCES customers(id),
    assigned_agent_id         TEXT COLLATE "C" REFERENCES agents(id),
    subject                   TEXT,
    widget_token_hash         TEXT,
    reply_token               TEXT,
    subject_key               TEXT,
    previous_conversation_id  TEXT COLLATE "C" REFERENCES conversations(id),
    bot_fallbacks             BIGINT NOT NULL DEFAULT 0,
    handback_note             TEXT,
    handed_back_at            BIGINT,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);
CREATE INDEX conversations_by_customer ON conversations(customer_id, channel, created_at DESC);
CREATE INDEX conversations_newest ON conversations(created_at DESC, id DESC);
CREATE INDEX conversations_by_status ON conversations(status, created_at DESC, id DESC);
CREATE INDEX conversations_by_channel ON conversations(channel, created_at DESC, id DESC);
CREATE UNIQUE INDEX conversations_by_reply_token ON conversations(reply_token) WHERE reply_token IS NOT NULL;
CREATE INDEX conversations_by_subject_key ON conversations(customer_id, channel, subject_key, updated_at DESC)
    WHERE subject_key IS NOT NULL;

CREATE TABLE messages (
    id                TEXT COLLATE "C" PRIMARY KEY,
    conversation_id   TEXT COLLATE "C" NOT NULL REFERENCES conversations(id),
    channel           TEXT NOT NULL,
    direction         TEXT NOT NULL,
    author_kind       TEXT NOT NULL,
    agent_id          TEXT COLLATE "C" REFERENCES agents(id),
    text              TEXT NOT NULL,
    html              TEXT,
    attachments       TEXT NOT NULL DEFAULT '[]',
    template          TEXT,
    external_id       TEXT,
    delivery_status   TEXT NOT NULL,
    delivery_error    TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    -- Inbound messages the bot/handoff pipeline has not handled yet (survives a crash).
    needs_processing  BOOLEAN NOT NULL DEFAULT FALSE,
    -- The inbound message a reply answers (storing the reply marks it handled).
    in_reply_to       TEXT COLLATE "C",
    thread_match      TEXT,
    automated         TEXT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, created_at, id);
-- A platform's redelivery of the same inbound message is recognized by this key.
CREATE UNIQUE INDEX messages_inbound_external ON messages(channel, external_id)
    WHERE direction = 'in' AND external_id IS NOT NULL;
CREATE INDEX messages_outbound_external ON messages(channel, external_id)
    WHERE direction = 'out' AND external_id IS NOT NULL;
CREATE INDEX messages_to_process ON messages(created_at) WHERE needs_processing;
CREATE INDEX messages_to_deliver ON messages(next_attempt_at) WHERE delivery_status = 'pending';

-- A new message changes its conversation, and a reply marks the inbound message it answers
-- handled, in the statement that stores it (as the SQLite triggers do).
CREATE FUNCTION messages_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET updated_at = greatest(updated_at, NEW.created_at)
    WHERE id = NEW.conversation_id;
    IF NEW.in_reply_to IS NOT NULL THEN
        UPDATE messages SET needs_processing = FALSE WHERE id = NEW.in_reply_to;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER messages_after_insert AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_after_insert();

CREATE TABLE message_edits (
    message_id  TEXT COLLATE "C" NOT NULL REFERENCES messages(id),
    old_text    TEXT NOT NULL,
    edited_at   BIGINT NOT NULL
);
CREATE INDEX message_edits_by_message ON message_edits(message_id, edited_at);

CREATE TABLE handoffs (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    conversation_id    TEXT COLLATE "C" NOT NULL REFERENCES conversations(id),
    reason             TEXT NOT NULL,
    reason_detail      TEXT,
    summary            TEXT,
    priority           TEXT NOT NULL,
    priority_rank      BIGINT NOT NULL,
    required_skills    TEXT NOT NULL DEFAULT '[]',
    status             TEXT NOT NULL,
    assigned_agent_id  TEXT COLLATE "C" REFERENCES agents(id),
    requested_at       BIGINT NOT NULL,
    assigned_at        BIGINT,
    accepted_at        BIGINT,
    first_reply_at     BIGINT,
    closed_at          BIGINT,
    team               TEXT,
    rule               TEXT,
    intent             TEXT,
    fields             TEXT NOT NULL DEFAULT '{}',
    language           TEXT,
    offer_deadline     BIGINT,
    excluded_agents    TEXT NOT NULL DEFAULT '[]',
    queue_entered_at   BIGINT,
    overflowed         BOOLEAN NOT NULL DEFAULT FALSE,
    sticky_agent_id    TEXT COLLATE "C",
    sticky_at          BIGINT,
    told_position      BIGINT,
    told_wait_ms       BIGINT,
    told_at            BIGINT
);
CREATE INDEX handoffs_queue ON handoffs(status, priority_rank DESC, requested_at);
CREATE INDEX handoffs_by_conversation ON handoffs(conversation_id, requested_at);
CREATE INDEX handoffs_by_agent ON handoffs(assigned_agent_id, status);
-- A conversation has at most one open ticket.
CREATE UNIQUE INDEX handoffs_one_open_per_conversation ON handoffs(conversation_id)
    WHERE status IN ('queued', 'assigned', 'accepted');
CREATE INDEX handoffs_offers ON handoffs(offer_deadline) WHERE status = 'assigned';
CREATE INDEX handoffs_recent_waits ON handoffs(team, accepted_at) WHERE accepted_at IS NOT NULL;

CREATE TABLE handoff_notes (
    id              TEXT COLLATE "C" PRIMARY KEY,
    handoff_id      TEXT COLLATE "C" NOT NULL REFERENCES handoffs(id),
    kind            TEXT NOT NULL,
    author_agent_id TEXT COLLATE "C" REFERENCES agents(id),
    to_team         TEXT,
    to_agent_id     TEXT COLLATE "C" REFERENCES agents(id),
    text            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX handoff_notes_by_handoff ON handoff_notes(handoff_id, created_at);

CREATE TABLE queues (
    team        TEXT PRIMARY KEY,
    settings    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE written_settings (
    name  TEXT PRIMARY KEY
);

CREATE TABLE escalation_rules (
    position    BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    rule        TEXT NOT NULL
);

-- Every routing change of any gateway instance bumps this counter; a router whose view is
-- older rebuilds itself from the store before it decides (several instances share tickets).
CREATE TABLE routing_version (
    one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version  BIGINT NOT NULL
);
INSERT INTO routing_version (one, version) VALUES (TRUE, 0);

CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('agent', 'manager', 'admin')),
    teams          TEXT NOT NULL DEFAULT '[]',
    password_hash  TEXT,
    disabled_at    BIGINT,
    created_at     BIGINT NOT NULL
);

-- Bearer tokens, stored as SHA-256 hashes only.
CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    agent_id    TEXT COLLATE "C" REFERENCES agents(id),
    label       TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    user_id     TEXT COLLATE "C" REFERENCES users(id)
);
CREATE INDEX api_tokens_by_user ON api_tokens(user_id);

CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    csrf_token    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor_id     TEXT COLLATE "C",
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_target ON audit_log(target_kind, target_id, id);

-- Handoff events wait here, written in the same transaction as the change that caused them,
-- until the shipper has stored them in ClickHouse. Writers take an advisory lock before
-- inserting (see the store), so positions become visible in order.
CREATE TABLE event_outbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE event_dead_letters (
    seq         BIGINT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    failed_at   BIGINT NOT NULL
);

-- The email channel.
CREATE TABLE email_message_ids (
    message_id       TEXT COLLATE "C" PRIMARY KEY,
    conversation_id  TEXT COLLATE "C" NOT NULL REFERENCES conversations(id),
    message_row      TEXT COLLATE "C" REFERENCES messages(id),
    direction        TEXT NOT NULL,
    address          TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX email_message_ids_by_conversation ON email_message_ids(conversation_id, created_at);

CREATE TABLE email_originals (
    message_row  TEXT COLLATE "C" PRIMARY KEY REFERENCES messages(id),
    subject      TEXT,
    full_text    TEXT,
    raw          BYTEA NOT NULL
);

CREATE TABLE attachment_blobs (
    id            TEXT PRIMARY KEY,
    message_row   TEXT COLLATE "C" NOT NULL REFERENCES messages(id),
    name          TEXT,
    content_type  TEXT NOT NULL,
    content_id    TEXT,
    inline        BOOLEAN NOT NULL DEFAULT FALSE,
    size          BIGINT NOT NULL,
    data          BYTEA NOT NULL
);
CREATE INDEX attachment_blobs_by_message ON attachment_blobs(message_row);

CREATE TABLE imap_positions (
    mailbox       TEXT NOT NULL,
    uid_validity  BIGINT NOT NULL,
    last_uid      BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (mailbox, uid_validity)
);
