-- Baton's store. Times are epoch milliseconds (INTEGER), ids are UUID text.

CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    display_name  TEXT,
    created_at    INTEGER NOT NULL
);

-- One row per handle (email, phone, platform user id); the primary key makes a handle
-- belong to exactly one customer.
CREATE TABLE identities (
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_by_customer ON identities(customer_id);

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    email             TEXT NOT NULL UNIQUE,
    skills            TEXT NOT NULL DEFAULT '[]',
    max_concurrent    INTEGER NOT NULL CHECK (max_concurrent >= 0),
    presence          TEXT NOT NULL,
    -- Round robin: the agent who was offered a ticket longest ago goes first.
    last_assigned_at  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);

CREATE TABLE conversations (
    id                 TEXT PRIMARY KEY,
    channel            TEXT NOT NULL,
    status             TEXT NOT NULL,
    customer_id        TEXT NOT NULL REFERENCES customers(id),
    assigned_agent_id  TEXT REFERENCES agents(id),
    subject            TEXT,
    widget_token_hash  TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX conversations_by_customer ON conversations(customer_id, channel, status);
CREATE INDEX conversations_newest ON conversations(created_at DESC, id DESC);
CREATE INDEX conversations_by_status ON conversations(status, created_at DESC, id DESC);
CREATE INDEX conversations_by_channel ON conversations(channel, created_at DESC, id DESC);

CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    conversation_id   TEXT NOT NULL REFERENCES conversations(id),
    channel           TEXT NOT NULL,
    direction         TEXT NOT NULL,
    author_kind       TEXT NOT NULL,
    agent_id          TEXT REFERENCES agents(id),
    text              TEXT NOT NULL,
    html              TEXT,
    attachments       TEXT NOT NULL DEFAULT '[]',
    external_id       TEXT,
    delivery_status   TEXT NOT NULL,
    delivery_error    TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    -- Inbound messages the bot/handoff pipeline has not handled yet (survives a crash).
    needs_processing  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, created_at, id);
-- A platform's redelivery of the same inbound message is recognized by this key.
CREATE UNIQUE INDEX messages_inbound_external ON messages(channel, external_id)
    WHERE direction = 'in' AND external_id IS NOT NULL;
CREATE INDEX messages_to_process ON messages(created_at) WHERE needs_processing = 1;
CREATE INDEX messages_to_deliver ON messages(next_attempt_at) WHERE delivery_status = 'pending';

CREATE TABLE handoffs (
    id                 TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations(id),
    reason             TEXT NOT NULL,
    reason_detail      TEXT,
    summary            TEXT,
    priority           TEXT NOT NULL,
    priority_rank      INTEGER NOT NULL,
    required_skills    TEXT NOT NULL DEFAULT '[]',
    status             TEXT NOT NULL,
    assigned_agent_id  TEXT REFERENCES agents(id),
    requested_at       INTEGER NOT NULL,
    assigned_at        INTEGER,
    accepted_at        INTEGER,
    first_reply_at     INTEGER,
    closed_at          INTEGER
);
CREATE INDEX handoffs_queue ON handoffs(status, priority_rank DESC, requested_at);
CREATE INDEX handoffs_by_conversation ON handoffs(conversation_id, requested_at);
CREATE INDEX handoffs_by_agent ON handoffs(assigned_agent_id, status);
-- A conversation has at most one open ticket.
CREATE UNIQUE INDEX handoffs_one_open_per_conversation ON handoffs(conversation_id)
    WHERE status IN ('queued', 'assigned', 'accepted');

-- Bearer tokens, stored as SHA-256 hashes only.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    agent_id    TEXT REFERENCES agents(id),
    label       TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Handoff events wait here, written in the same transaction as the change that caused them,
-- until the shipper has stored them in ClickHouse.
CREATE TABLE event_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
