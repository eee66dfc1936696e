-- A question remembers the client's name for it (`ask_id` of the `ask` frame), kept as
-- "{user id}:{ask_id}": an `ask` sent again after its connection dropped before
-- `start` finds the question the first one stored instead of asking twice
-- (docs/protocol.md, "Asking again after a drop"). One student's names never meet
-- another's. Questions asked without one (the lesson's client) keep NULL, which the
-- partial index leaves out.
ALTER TABLE messages ADD COLUMN ask_key TEXT;
CREATE UNIQUE INDEX messages_ask_key ON messages (ask_key) WHERE ask_key IS NOT NULL;
