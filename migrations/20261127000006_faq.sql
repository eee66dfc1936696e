-- Issue #11. The course FAQ: answers the teacher endorsed (optionally with the
-- question's wording and the answer's text edited). `message_id` is the answer it came
-- from (no foreign key: a guest's conversation may be cleaned up, the entry stays);
-- `sources` is that answer's sources as JSON, so its [n] citations still link.
CREATE TABLE faq_entries (
    id           TEXT PRIMARY KEY,
    message_id   TEXT NOT NULL,
    question     TEXT NOT NULL,
    answer       TEXT NOT NULL,
    sources      TEXT,
    endorsed_by  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX faq_entries_message ON faq_entries (message_id);

-- One row, bumped in the same transaction as every change to faq_entries: each
-- instance reads it per question and reloads its FAQ matcher when it moved.
CREATE TABLE faq_version (
    id       TEXT PRIMARY KEY,
    version  BIGINT NOT NULL
);
INSERT INTO faq_version (id, version) VALUES ('faq', 0);

-- An answer that is an FAQ entry given without the model ("answered by your teacher").
ALTER TABLE messages ADD COLUMN faq_id TEXT;
