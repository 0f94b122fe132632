-- Terraform's pg backend keeps state in `terraform_remote_state.states` (its default schema_name), reached through a
-- role of its own (ghapp/db/state_role.py) that may only use this schema. The app creates what Terraform would
-- create itself, so that role needs no CREATE right; Terraform runs with PG_SKIP_{SCHEMA,TABLE,INDEX}_CREATION.
-- Terraform's own table takes its ids from `public.global_states_id_seq`; this one has a sequence in its own
-- schema, so the role needs nothing in `public`. A table Terraform created before (as the app's role) is kept and
-- moved to that sequence.
CREATE SCHEMA IF NOT EXISTS terraform_remote_state;
CREATE SEQUENCE IF NOT EXISTS terraform_remote_state.states_id_seq AS bigint;
CREATE TABLE IF NOT EXISTS terraform_remote_state.states (
    id bigint NOT NULL DEFAULT nextval('terraform_remote_state.states_id_seq') PRIMARY KEY,
    name text UNIQUE,
    data text
);
ALTER TABLE terraform_remote_state.states ALTER COLUMN id SET DEFAULT nextval('terraform_remote_state.states_id_seq');
SELECT setval('terraform_remote_state.states_id_seq', m) FROM (SELECT max(id) AS m FROM terraform_remote_state.states) s
 WHERE m IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS states_by_name ON terraform_remote_state.states (name);

-- The state role's password, shared by replicas; only the app's role (the owner) can read it.
CREATE TABLE state_role (
    name text PRIMARY KEY,
    password text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON state_role FROM PUBLIC;
