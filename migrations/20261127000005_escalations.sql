-- Issue #11. "Ask my teacher": a student sends a conversation to the teacher, from one
-- of its answers, with an optional note. 'open' until the teacher replies ('answered':
-- the reply is a message of role 'teacher' in the conversation) or resolves it without
-- a reply ('resolved').
CREATE TABLE escalations (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    message_id       TEXT NOT NULL,
    note             TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    closed_at        BIGINT,
    closed_by        TEXT,
    reply_id         TEXT
);
-- The teacher's queue: open first, oldest first.
CREATE INDEX escalations_queue ON escalations (status, created_at);
CREATE INDEX escalations_conversation ON escalations (conversation_id);
-- One request per answer: asking again about it shows where the first one stands.
CREATE UNIQUE INDEX escalations_message ON escalations (message_id);

-- A 👎 may come with "share this conversation with my teacher" (1) ticked.
ALTER TABLE feedback ADD COLUMN shared BIGINT NOT NULL DEFAULT 0;

-- Teachers see guests as "Guest 17": a number given when the guest is created, in
-- order of arrival, never reused while the guest exists.
ALTER TABLE users ADD COLUMN guest_no BIGINT;
UPDATE users SET guest_no = numbered.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM users) AS numbered
WHERE numbered.id = users.id;
CREATE UNIQUE INDEX users_guest_no ON users (guest_no);
