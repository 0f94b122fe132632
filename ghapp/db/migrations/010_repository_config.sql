-- The repository decides (issue 10) and the preview gateway (issue 11): what the pull request looks like to the
-- deploy rules, the configuration a preview was resolved with, why it is held back, and sleep.

-- What `.github/preview.yml`'s rules look at, kept from the pull request's events.
ALTER TABLE environments ADD COLUMN base_ref text NOT NULL DEFAULT '';
ALTER TABLE environments ADD COLUMN draft boolean NOT NULL DEFAULT false;
ALTER TABLE environments ADD COLUMN labels text[] NOT NULL DEFAULT '{}';
-- `deploy: manual`: someone asked for this PR's preview (`/preview deploy` or the check run's button).
ALTER TABLE environments ADD COLUMN deploy_requested boolean NOT NULL DEFAULT false;
-- `/preview keep`: no expiry while the PR is open.
ALTER TABLE environments ADD COLUMN keep boolean NOT NULL DEFAULT false;
-- The "expires in ..." reminder was shown for the current expires_at.
ALTER TABLE environments ADD COLUMN expiry_warned_at timestamptz;

-- The configuration the environment was last resolved with: its effective values (JSON), and where it came from
-- (`repository`, `organization` or `operator`, with the file's blob SHA when there is a file).
ALTER TABLE environments ADD COLUMN config jsonb;
ALTER TABLE environments ADD COLUMN config_source text;
ALTER TABLE environments ADD COLUMN config_blob_sha text;
-- Why the preview is held back, when it is: `skipped` (a rule says no preview), `waiting` (for `wait_for`
-- checks), `invalid` (the configuration file is broken), `queued` (beyond `max_previews`). NULL: not held.
ALTER TABLE environments ADD COLUMN hold text CHECK (hold IN ('skipped', 'waiting', 'invalid', 'queued'));
ALTER TABLE environments ADD COLUMN hold_reason text;

-- The gateway: who may see the preview (resolved from the configuration, else the operator's default) and sleep.
ALTER TABLE environments ADD COLUMN access text CHECK (access IN ('public', 'repository'));
ALTER TABLE environments ADD COLUMN sleep_after double precision CHECK (sleep_after > 0);  -- seconds; NULL: never
ALTER TABLE environments ADD COLUMN desired_sleeping boolean NOT NULL DEFAULT false;
ALTER TABLE environments ADD COLUMN last_request_at timestamptz;

ALTER TABLE environments DROP CONSTRAINT environments_status_check;
ALTER TABLE environments ADD CONSTRAINT environments_status_check
    CHECK (status IN ('pending', 'creating', 'active', 'sleeping', 'destroying', 'destroyed', 'failed'));

-- The configuration a run used.
ALTER TABLE runs ADD COLUMN config_source text;
ALTER TABLE runs ADD COLUMN config_blob_sha text;

-- Environments waiting for checks of a commit are found by it when a check_run / status event arrives.
CREATE INDEX environments_waiting_checks ON environments (repo_id, desired_sha) WHERE hold = 'waiting';
