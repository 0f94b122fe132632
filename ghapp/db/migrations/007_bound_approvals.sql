-- Replays change nothing, and a fork's approval names its commit. A command keeps the commit it approves (`sha`:
-- named in `/preview deploy <sha>`, possibly abbreviated, or the head ghapp knew when the comment arrived, or the
-- check run's commit); a comment is queued once however often it is delivered (duplicates queued before this are
-- dropped, the oldest kept); each environment keeps the newest `pull_request.updated_at` it applied and whether that
-- event closed the PR, so an older delivery (a replay with a new delivery id) is ignored.
ALTER TABLE commands
    ADD COLUMN sha text CHECK (sha ~ '^[0-9a-f]{7,40}$'),
    ADD COLUMN sha_named boolean NOT NULL DEFAULT false;
DELETE FROM commands c USING commands first
 WHERE c.comment_id = first.comment_id AND c.id > first.id;
CREATE UNIQUE INDEX commands_comment ON commands (comment_id) WHERE comment_id IS NOT NULL;

ALTER TABLE environments
    ADD COLUMN pr_updated_at timestamptz,
    ADD COLUMN pr_closed boolean NOT NULL DEFAULT false;
