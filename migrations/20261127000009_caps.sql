-- Issue #12: a student's caps counted across instances.

-- "Answers at once per student" counts a student's streaming answers: their recent
-- conversations (by user_id, updated_at), then this index per conversation.
CREATE INDEX messages_streaming_by_conversation ON messages (conversation_id) WHERE status = 'streaming';

-- Open chat sockets, one row each, so "sockets per student" holds across instances.
-- session_key is the SHA-256 of the session token (tokens are never stored).
CREATE TABLE open_sockets (
    id          TEXT PRIMARY KEY,
    session_key TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    opened_at   BIGINT NOT NULL
);
CREATE INDEX open_sockets_session ON open_sockets (session_key);
CREATE INDEX open_sockets_instance ON open_sockets (instance_id);

-- Each instance says it is alive once a second: the sockets of an instance that
-- stopped saying so (killed) no longer count.
CREATE TABLE instances (
    id      TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
