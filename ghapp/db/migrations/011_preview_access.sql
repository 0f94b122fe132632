-- Who may see a preview (issue 11): "Sign in with GitHub" sessions on preview hosts, the single-use tickets that
-- hand a sign-in from ghapp's callback to a preview's host, and automation tokens. Secrets are stored as SHA-256.

-- A signed-in person on one preview host. The cookie holds a random id; a session is worth nothing on any other
-- host, and ends with the person's authorization (github_app_authorization revoked) or their read access.
CREATE TABLE access_sessions (
    id_hash bytea PRIMARY KEY,
    host text NOT NULL,               -- the preview host (`<environment_name>.<domain>`) the cookie was set on
    repo_id bigint NOT NULL,          -- the repository whose readers may see that preview
    user_id bigint NOT NULL,          -- GitHub's id of the person
    login text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX access_sessions_user ON access_sessions (user_id, repo_id);
CREATE INDEX access_sessions_expiry ON access_sessions (expires_at);

-- A sign-in on ghapp's callback, handed to the preview host: redeemed once, within a minute.
CREATE TABLE access_tickets (
    id_hash bytea PRIMARY KEY,
    host text NOT NULL,
    repo_id bigint NOT NULL,
    user_id bigint NOT NULL,
    login text NOT NULL,
    path text NOT NULL,               -- where on the preview host to go once signed in
    expires_at timestamptz NOT NULL
);

-- Automation (end-to-end tests in CI): a bearer token that opens the previews of one repository, until revoked.
CREATE TABLE access_tokens (
    id bigserial PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    repository text NOT NULL,         -- `owner/name`, compared case-insensitively
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,           -- NULL: until revoked
    revoked_at timestamptz
);
