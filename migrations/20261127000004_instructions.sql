-- Issue #11. What the teacher tells the tutor: course-wide instructions (scope '') and a
-- note per lesson (scope = the lesson's slug). Every change is a row, so who changed
-- what and when is kept; the newest row of a scope is in force (empty text: none).
CREATE TABLE tutor_instructions (
    id          TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,
    text        TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_at  BIGINT NOT NULL
);
CREATE INDEX tutor_instructions_scope ON tutor_instructions (scope, changed_at);
