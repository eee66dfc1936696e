-- The lesson sections an answer may cite, as JSON (a list of sources, see
-- src/lessons/mod.rs). Stored with the answer's row when it starts, so history
-- shows them and a crash mid-answer keeps them.
ALTER TABLE messages ADD COLUMN sources TEXT;
