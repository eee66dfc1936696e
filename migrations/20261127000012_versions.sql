-- Versions of questions and answers (issue #14): a conversation is a tree. Editing a
-- question adds a sibling of it, regenerating an answer adds a sibling of that answer;
-- the earlier versions stay. `position` stays the order of insertion (unique per
-- conversation, which keeps two appends at once apart), so a child always comes after
-- its parent.
--
-- `parent_id`: the message this one follows ('' for a conversation's first question).
-- An answer's parent is its question; a version's siblings share its parent and role.
ALTER TABLE messages ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
-- 1 on the branch the student sees (the chosen version at every fork, and the newest
-- version below a switch); every read of "the conversation" reads only these, so
-- paging, export and the model's context stay plain indexed reads.
ALTER TABLE messages ADD COLUMN on_branch BIGINT NOT NULL DEFAULT 1;

-- Until now a conversation was one line: each message follows the one before it.
UPDATE messages SET parent_id = COALESCE(
    (SELECT p.id FROM messages p
     WHERE p.conversation_id = messages.conversation_id AND p.position < messages.position
     ORDER BY p.position DESC LIMIT 1),
    '');

-- A message's versions, and the walk down from a chosen version to its newest leaf.
CREATE INDEX messages_parent ON messages (parent_id, position);
