-- Issue #12's benchmark: a new guest is stored without a number, and numbers are
-- given in batches, off the arrival path (`Db::number_guests`, docs/storage.md).
-- Finding the guests that wait for one is this partial index: empty nearly always,
-- so the once-a-second look and the look before a teacher's read cost nothing.
-- (Accounts made without being a guest first never get a number: not in it.)
CREATE INDEX users_unnumbered ON users (created_at, id) WHERE guest_no IS NULL AND username IS NULL;
