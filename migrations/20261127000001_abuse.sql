-- Issue #10. A sign-in attempt is reserved as a failure before its password is
-- verified, so parallel guesses cannot all pass the count; a success removes its own
-- reservation by id.
ALTER TABLE login_failures ADD COLUMN attempt_id TEXT;

-- Per-address budgets (sign-ups, new guests, questions): one row per event, counted in
-- a sliding window and pruned as it goes.
CREATE TABLE address_events (
    address  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX address_events_lookup ON address_events (address, kind, at);

-- The course's daily token budget sums today's finished answers.
CREATE INDEX messages_finished_at ON messages (finished_at);
