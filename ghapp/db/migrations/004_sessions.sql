-- Dashboard sign-in sessions kept server-side, so that signing out (or a new admin token) really ends them.
-- The cookie holds a random id; only its SHA-256 is stored.
CREATE TABLE sessions (
    id_hash bytea PRIMARY KEY,
    key_id text NOT NULL,              -- which admin token signed this session in (a new token ends every session)
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
