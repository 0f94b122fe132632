-- Fair claiming (issue 9, finding 7): runs in flight per repository and author, new previews waiting beyond a
-- repository's `max_previews` in order, and retention of old runs, logs and commands, each found by an index.

-- A per-environment cap on live previews of its repository (NULL: the operator's GHAPP_MAX_PREVIEWS). Written
-- later from the repository's `.github/preview.yml`; the claim reads it through preview_queue.
ALTER TABLE environments ADD COLUMN max_previews integer CHECK (max_previews > 0);

-- Environments that hold a lease (runs in flight), grouped by repository and author when claiming.
CREATE INDEX environments_leased ON environments (repo_id, author) WHERE lease_owner IS NOT NULL;
-- Live previews of a repository: provisioned (resources may exist), or claimed to be created.
CREATE INDEX environments_live ON environments (repo_id) WHERE provisioned OR lease_owner IS NOT NULL;
-- New previews not yet started, in request order per repository.
CREATE INDEX environments_waiting ON environments (repo_id, created_at, id)
    WHERE desired = 'present' AND NOT provisioned AND generation > observed_generation;

-- New previews that wait for a slot of their repository: `live` previews of the repository exist and this one is
-- `position`-th in line (oldest request first). One may start while live + position <= the cap.
CREATE VIEW preview_queue AS
SELECT w.id, w.repo_id, w.max_previews,
       (SELECT count(*) FROM environments l
         WHERE l.repo_id = w.repo_id AND (l.provisioned OR l.lease_owner IS NOT NULL)
           AND (l.provisioned OR (l.desired = 'present' AND l.lease_until >= now()))) AS live,
       row_number() OVER (PARTITION BY w.repo_id ORDER BY w.created_at, w.id) AS position
FROM environments w
WHERE w.desired = 'present' AND NOT w.provisioned AND w.generation > w.observed_generation
  AND (w.lease_until IS NULL OR w.lease_until < now());

-- Retention: finished runs by age, done commands by age.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX commands_done ON commands (done_at) WHERE done_at IS NOT NULL;
