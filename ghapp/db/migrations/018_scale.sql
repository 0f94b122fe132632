-- 10,000 environments in one database (issue 13): what the dashboard and the API read is found through an index
-- (tests/test_query_plans.py checks every repeated statement's plan).
-- A page of one repository's environments, newest or oldest first (keyset pagination by id).
CREATE INDEX environments_repository ON environments (repository, id);
-- The dashboard's counts per repository and status and /metrics' per status (with the unconverged among them) read
-- this index alone (an index-only scan), not every row of the table.
CREATE INDEX environments_counts ON environments (repository, status) INCLUDE (generation, observed_generation);
-- The command processor takes the oldest pending command: in id order over the pending ones only, not over every
-- done command that retention still keeps.
CREATE INDEX commands_pending_by_id ON commands (id) WHERE done_at IS NULL;
