-- The question budget (issue #14): a token bucket per user in one column, the moment
-- the bucket is full again (0: full). It replaces the sliding window of
-- `question_events`, which nothing reads any more. See src/chat/budget.rs.
ALTER TABLE users ADD COLUMN questions_full_at BIGINT NOT NULL DEFAULT 0;
DROP TABLE question_events;
