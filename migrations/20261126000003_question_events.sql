-- One row per question accepted, for the per-user rate limit. Kept apart from
-- `messages` so deleting a conversation does not hand back its questions' quota; rows
-- older than an hour are pruned as questions come in.
CREATE TABLE question_events (
    user_id  TEXT NOT NULL REFERENCES users (id),
    at       BIGINT NOT NULL
);
CREATE INDEX question_events_user_at ON question_events (user_id, at);
