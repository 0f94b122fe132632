-- GitHub: fork approvals, what was last published on each pull request, and the commands people give.
ALTER TABLE environments
    ADD COLUMN head_sha text,
    ADD COLUMN approved_sha text,
    ADD COLUMN version bigint,
    ADD COLUMN published_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN published jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN publish_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN publish_after timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN github_gone boolean NOT NULL DEFAULT false;

CREATE SEQUENCE environment_versions;
UPDATE environments SET version = nextval('environment_versions'), head_sha = desired_sha;
ALTER TABLE environments
    ALTER COLUMN version SET DEFAULT nextval('environment_versions'),
    ALTER COLUMN version SET NOT NULL;

-- Every change of an environment gets a new version, except the publisher's own bookkeeping, so the publisher
-- knows what changed since it last told GitHub without every writer having to remember it.
CREATE FUNCTION environments_new_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := nextval('environment_versions');
    RETURN NEW;
END $$;
CREATE TRIGGER environments_version BEFORE UPDATE ON environments FOR EACH ROW
    WHEN (OLD.published_version = NEW.published_version AND OLD.published = NEW.published
          AND OLD.publish_after = NEW.publish_after)
    EXECUTE FUNCTION environments_new_version();
CREATE INDEX environments_unpublished ON environments (publish_after) WHERE version > published_version;

CREATE TABLE commands (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('comment', 'check_run')),
    command         text NOT NULL CHECK (command IN ('deploy', 'redeploy', 'destroy', 'help')),
    unknown         text,
    installation_id bigint NOT NULL,
    repo_id         bigint NOT NULL,
    repository      text NOT NULL,
    pr_number       integer NOT NULL,
    comment_id      bigint,
    author          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    outcome         text
);
CREATE INDEX commands_pending ON commands (next_attempt_at) WHERE done_at IS NULL;
