-- Issue #11, the course dashboard (/teach).

-- When the answer's first chunk arrived (Unix ms): time to first token is
-- first_token_at - created_at. NULL for answers that never got a chunk and for those
-- stored before this migration.
ALTER TABLE messages ADD COLUMN first_token_at BIGINT;
-- The best lesson match retrieval found for the question, on the answer's row, as
-- thousandths of the search score (BM25): 0 when nothing matched, NULL for answers
-- stored before this migration. "Weak" is below teacher::WEAK_MATCH_MILLI.
ALTER TABLE messages ADD COLUMN retrieval_score BIGINT;

-- The lesson sections given to each answer as its sources (what it may cite with
-- [n]), one row per section, so "most cited" is a GROUP BY on both backends instead
-- of JSON functions each spells differently. Written with the answer's row; answers
-- stored before this migration are not counted.
CREATE TABLE answer_sources (
    message_id  TEXT NOT NULL,
    lesson      TEXT NOT NULL,
    anchor      TEXT NOT NULL,
    section     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- Covering: "most cited" counts answers and sections from the index alone.
CREATE INDEX answer_sources_created ON answer_sources (created_at, lesson, anchor, message_id, section);
CREATE INDEX answer_sources_message ON answer_sources (message_id);

-- Every dashboard aggregate reads a period of one role's rows: answers or questions
-- since a day. Covering indexes, so the aggregates never read the rows' text: the
-- answers' (endings, tokens, time to first token, retrieval score) and the questions'
-- (their conversation, for students per day). docs/BENCHMARKS.md has the numbers.
CREATE INDEX messages_role_created ON messages (role, created_at, status, error_code, prompt_tokens,
    completion_tokens, first_token_at, retrieval_score);
CREATE INDEX messages_questions_created ON messages (role, created_at, conversation_id);

-- A finished day's dashboard numbers, summed once it has been over for an hour and
-- kept (JSON, see teacher/dashboard_store.rs), so a 30-day /teach reads 30 rows and
-- the live day's instead of every row of the month; and for each student the latest
-- summed day they asked on, for "active students" over a period (each counted once).
CREATE TABLE dashboard_days (
    day          BIGINT PRIMARY KEY,
    summary      TEXT NOT NULL,
    computed_at  BIGINT NOT NULL
);
CREATE TABLE dashboard_student_last_day (
    user_id   TEXT PRIMARY KEY,
    last_day  BIGINT NOT NULL
);
CREATE INDEX dashboard_student_last_day_day ON dashboard_student_last_day (last_day);

-- The rated answer's time on its rating, so the period's 👍/👎 are counted from
-- `feedback` alone.
ALTER TABLE feedback ADD COLUMN answer_at BIGINT;
UPDATE feedback SET answer_at = (SELECT m.created_at FROM messages m WHERE m.id = feedback.message_id);
CREATE INDEX feedback_answer_at ON feedback (answer_at, rating);
-- Content gaps: the period's weakly matched answers, newest first. The threshold is
-- teacher::dashboard::WEAK_MATCH_MILLI; the query spells it the same way.
CREATE INDEX messages_gaps ON messages (created_at) WHERE role = 'assistant' AND retrieval_score < 3000;
