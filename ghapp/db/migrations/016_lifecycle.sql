-- Lifecycle keys (issue 10, item 6): the configuration's `ttl`, `/preview keep`, and the expiry reminder.

-- The repository's `ttl` (seconds) from the configuration the environment was last applied with; NULL: the
-- operator's GHAPP_ENV_TTL. Later pushes renew the expiry with it.
ALTER TABLE environments ADD COLUMN ttl double precision CHECK (ttl > 0);

-- When a preview expires: `ttl` seconds after its last activity (a push, a deploy command); never while kept
-- (`/preview keep`). The same rule as ghapp.core.policy.expiry, for the SQL that writes expires_at.
CREATE FUNCTION preview_expiry(last_activity timestamptz, ttl double precision, keep boolean)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN keep THEN NULL ELSE last_activity + make_interval(secs => ttl) END
$$;

-- Present environments whose reminder is not shown yet, by expiry.
CREATE INDEX environments_expiry_reminder ON environments (expires_at)
    WHERE desired = 'present' AND expiry_warned_at IS NULL;

-- The comment commands of DESIGN.md, `keep off` (the undo of `keep`) among them.
ALTER TABLE commands DROP CONSTRAINT commands_command_check;
ALTER TABLE commands ADD CONSTRAINT commands_command_check
    CHECK (command IN ('deploy', 'redeploy', 'destroy', 'sleep', 'wake', 'keep', 'keep off', 'help'));
