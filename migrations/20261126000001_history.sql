-- One schema for SQLite and PostgreSQL: only TEXT and BIGINT columns, times as Unix
-- milliseconds, ids as text (UUIDs). docs/storage.md says why and how to keep it so.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- A browser's session. The cookie's token is stored only as its SHA-256.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- The lesson's chat_sessions.
CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    title       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
-- "My conversations, newest first", cursor-paged on (updated_at, id).
CREATE INDEX conversations_user_recent ON conversations (user_id, updated_at, id);

-- The lesson's chat_messages. `position` orders a conversation's messages.
CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations (id),
    position           BIGINT NOT NULL,
    role               TEXT NOT NULL,
    content            TEXT NOT NULL,
    status             TEXT NOT NULL,
    error_code         TEXT,
    chunk_seq          BIGINT NOT NULL DEFAULT 0,
    owner_instance     TEXT,
    created_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    prompt_tokens      BIGINT,
    completion_tokens  BIGINT
);
-- Loading a conversation page by page, and the next position.
CREATE UNIQUE INDEX messages_conversation_position ON messages (conversation_id, position);
-- Start-up recovery finds the few rows still streaming.
CREATE INDEX messages_streaming ON messages (owner_instance) WHERE status = 'streaming';
