-- A page of a conversation reads the versions of just its own messages: the children
-- of their parents, in this conversation (`fill_versions`). Without this index that
-- read scanned the whole conversation for forks on every page (2.8 ms at 1,000
-- messages on PostgreSQL, docs/BENCHMARKS.md); with it, one index range per parent.
-- The conversation comes first because the first question's parent is '' in every
-- conversation.
CREATE INDEX messages_siblings ON messages (conversation_id, parent_id);
