-- The preview gateway (issue 11): it finds a preview by its host's environment name, and it records when each
-- preview was last requested, a few seconds' requests in one UPDATE. That write is activity, not a change to show on
-- the pull request: it must not give the environment a new version (which would republish every busy preview).
CREATE INDEX environments_name ON environments (name);

DROP TRIGGER environments_version ON environments;
CREATE TRIGGER environments_version BEFORE UPDATE ON environments FOR EACH ROW
    WHEN (OLD.published_version = NEW.published_version AND OLD.published = NEW.published
          AND OLD.publish_after = NEW.publish_after
          AND (OLD.last_request_at IS NOT DISTINCT FROM NEW.last_request_at
               OR to_jsonb(OLD) - 'last_request_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_request_at'))
    EXECUTE FUNCTION environments_new_version();
