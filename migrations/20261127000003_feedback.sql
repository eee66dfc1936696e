-- Issue #11. A student's rating of one answer: 'up' or 'down', with optional reasons
-- (comma-separated words) and a short comment. Whose it is follows from the answer's
-- conversation; the row goes with the answer.
CREATE TABLE feedback (
    message_id  TEXT PRIMARY KEY,
    rating      TEXT NOT NULL,
    reasons     TEXT NOT NULL DEFAULT '',
    comment     TEXT NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL
);
