-- Environments destroyed for having had no push for GHAPP_ENV_TTL remember it, so the PR can say so.
ALTER TABLE environments ADD COLUMN expired_at timestamptz;
CREATE INDEX environments_expiry ON environments (expires_at) WHERE desired = 'present';
