-- Searching one's conversations (issue #14): an inverted index in plain tables, the
-- same on SQLite and PostgreSQL and shared by every instance. A term is a word of a
-- conversation's title or messages stemmed as the lessons are (English and Russian
-- Snowball, src/lessons/index.rs); the server writes them, so both backends stem alike.
-- No user id here: a search joins `conversations` for the owner, so signing in (which
-- moves a guest's conversations) needs no change.
CREATE TABLE search_terms (
    term             TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    PRIMARY KEY (term, conversation_id)
);
CREATE INDEX search_terms_conversation ON search_terms (conversation_id);

-- 1 once a finished message's words are in `search_terms`. Messages are indexed when
-- their owner searches (src/history/search.rs), so the answer path writes nothing more.
ALTER TABLE messages ADD COLUMN search_indexed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_search_pending ON messages (conversation_id) WHERE search_indexed = 0;
