-- Accounts: a user with a username and a password is an account; without, a guest.
-- `username_key` is the lowercased name, unique, so names are unique whatever their case.
ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN username_key TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE UNIQUE INDEX users_username_key ON users (username_key);

-- Account sessions expire after a while unused (sliding); guest sessions (NULL) do not.
ALTER TABLE sessions ADD COLUMN expires_at BIGINT;

-- Failed sign-ins, by `u:<username_key>` and `ip:<address>`, for throttling.
CREATE TABLE login_failures (
    key  TEXT NOT NULL,
    at   BIGINT NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);
