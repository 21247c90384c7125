-- Accounts: people who sign in (agents, managers, admins), their browser sessions, API tokens
-- that belong to a person, and the audit log of who did what.

-- An agent's user id is their agent id; their skills, teams and capacity stay in `agents`.
-- `teams` is for managers: the teams whose tickets and figures they oversee.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('agent', 'manager', 'admin')),
    teams          TEXT NOT NULL DEFAULT '[]',
    -- Argon2id PHC string; NULL: this user signs in with API tokens only.
    password_hash  TEXT,
    disabled_at    INTEGER,
    created_at     INTEGER NOT NULL
);

-- Every existing agent becomes a user with the agent role (an admin sets their password).
INSERT OR IGNORE INTO users (id, email, name, role, created_at)
    SELECT id, lower(email), name, 'agent', created_at FROM agents;

-- A token may belong to a user: it then acts with that user's current role, and stops working
-- when the user is disabled.
ALTER TABLE api_tokens ADD COLUMN user_id TEXT REFERENCES users(id);
UPDATE api_tokens SET user_id = agent_id WHERE role = 'agent' AND agent_id IN (SELECT id FROM users);
CREATE INDEX api_tokens_by_user ON api_tokens(user_id);

-- Browser sessions. The cookie holds a random id; only its SHA-256 is stored. Each session has
-- its own CSRF token, which every state-changing request made with the cookie must echo.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id),
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

-- Who did what to which ticket or setting. Append-only.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    -- The user who acted; NULL for the configured admin token, which belongs to nobody.
    actor_id     TEXT,
    -- How the actor was known at the time (email, or the token's label).
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_target ON audit_log(target_kind, target_id, id);
