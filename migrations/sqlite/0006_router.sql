-- The handoff router: queues per team, offers with deadlines, transfers and notes,
-- escalation rules as data, capacity per kind of work, business hours, customer tags.

-- The ticket's queue (NULL: the general queue), the rule that fired, what the bot learned.
ALTER TABLE handoffs ADD COLUMN team TEXT;
ALTER TABLE handoffs ADD COLUMN rule TEXT;
ALTER TABLE handoffs ADD COLUMN intent TEXT;
ALTER TABLE handoffs ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';
ALTER TABLE handoffs ADD COLUMN language TEXT;
-- While offered: when the offer lapses. Agents who declined or let it lapse (JSON array),
-- never offered this ticket again while someone else can take it.
ALTER TABLE handoffs ADD COLUMN offer_deadline INTEGER;
ALTER TABLE handoffs ADD COLUMN excluded_agents TEXT NOT NULL DEFAULT '[]';
-- When it entered its current queue (overflow counts from here; transfers and overflow move
-- it), and whether that queue's overflow rule was applied.
ALTER TABLE handoffs ADD COLUMN queue_entered_at INTEGER;
ALTER TABLE handoffs ADD COLUMN overflowed INTEGER NOT NULL DEFAULT 0;
-- Sticky routing: the agent who last helped this customer, and when.
ALTER TABLE handoffs ADD COLUMN sticky_agent_id TEXT;
ALTER TABLE handoffs ADD COLUMN sticky_at INTEGER;
-- Honest waiting: what the customer was last told (position, estimate) and when.
ALTER TABLE handoffs ADD COLUMN told_position INTEGER;
ALTER TABLE handoffs ADD COLUMN told_wait_ms INTEGER;
ALTER TABLE handoffs ADD COLUMN told_at INTEGER;
CREATE INDEX handoffs_offers ON handoffs(offer_deadline) WHERE status = 'assigned';
CREATE INDEX handoffs_recent_waits ON handoffs(team, accepted_at) WHERE accepted_at IS NOT NULL;

-- Transfer and hand-back notes, and internal notes: they travel with the ticket.
CREATE TABLE handoff_notes (
    id              TEXT PRIMARY KEY,
    handoff_id      TEXT NOT NULL REFERENCES handoffs(id),
    kind            TEXT NOT NULL,
    author_agent_id TEXT REFERENCES agents(id),
    to_team         TEXT,
    to_agent_id     TEXT REFERENCES agents(id),
    text            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX handoff_notes_by_handoff ON handoff_notes(handoff_id, created_at);

-- Capacity per kind of work ({"chat": 3, "messaging": 5, "email": 10}; a missing kind falls
-- back to max_concurrent) and the agent's own working hours (JSON, NULL: always).
ALTER TABLE agents ADD COLUMN capacity TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN hours TEXT;

-- Queue settings per team (JSON): strategy, skills, timeouts, overflow, hours, on-call.
CREATE TABLE queues (
    team        TEXT PRIMARY KEY,
    settings    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Settings written at least once (so an empty list set on purpose is not mistaken for
-- "never configured", which means the defaults).
CREATE TABLE written_settings (
    name  TEXT PRIMARY KEY
);

-- Escalation rules, evaluated in position order; the first that matches fires.
CREATE TABLE escalation_rules (
    position    INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    rule        TEXT NOT NULL
);

-- Tags on customers (vip, ...), which rules can match.
ALTER TABLE customers ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

-- The bot's fallback streak (it did not understand N times in a row), and the note an agent
-- left for the bot when handing the conversation back.
ALTER TABLE conversations ADD COLUMN bot_fallbacks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN handback_note TEXT;
ALTER TABLE conversations ADD COLUMN handed_back_at INTEGER;
