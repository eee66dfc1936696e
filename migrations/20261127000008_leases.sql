-- Issue #12: answers outlive their instance. A streaming answer holds a lease that its
-- instance renews once a second (with the checkpoints); when it lapses, another
-- instance (or the same one, restarted) takes the answer over and continues it.

-- Until when (Unix ms) the owner_instance holds the answer. NULL: since
-- created_at + the lease (a row is created with its lease implied). 0: released by a
-- shutdown that ended its grace period — take it over at once, it is not a crash.
ALTER TABLE messages ADD COLUMN lease_until BIGINT;
-- How many times the answer changed hands (0: its first instance). Carried by every
-- live chunk between instances: a follower that sees a newer one re-syncs.
ALTER TABLE messages ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
-- How many times it was continued after a crash (a lapsed lease, not a release);
-- past `max_continuations` it stays interrupted.
ALTER TABLE messages ADD COLUMN continued BIGINT NOT NULL DEFAULT 0;
-- Where another instance took over: byte offsets into content, as a JSON array
-- ("[812]"); NULL when the answer was written in one go. The page marks them.
ALTER TABLE messages ADD COLUMN seams TEXT;
