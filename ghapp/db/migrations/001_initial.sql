-- The environments' desired and observed state, their Terraform runs with logs, and accepted deliveries.
CREATE TABLE environments (
    id                  bigserial PRIMARY KEY,
    repo_id             bigint NOT NULL,
    repository          text NOT NULL,
    pr_number           integer NOT NULL,
    name                text,
    installation_id     bigint,
    head_ref            text NOT NULL DEFAULT '',
    author              text NOT NULL DEFAULT '',
    title               text NOT NULL DEFAULT '',
    pr_url              text NOT NULL DEFAULT '',
    is_fork             boolean NOT NULL DEFAULT false,
    -- desired state, written by events; every change bumps generation
    desired             text NOT NULL CHECK (desired IN ('present', 'absent')),
    desired_sha         text,
    generation          bigint NOT NULL DEFAULT 1,
    -- observed state, written by workers
    observed_generation bigint NOT NULL DEFAULT 0,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'creating', 'active', 'destroying', 'destroyed', 'failed')),
    provisioned         boolean NOT NULL DEFAULT false,
    deployed_sha        text,
    preview_url         text,
    outputs             jsonb NOT NULL DEFAULT '{}',
    progress            jsonb,
    -- work coordination
    lease_owner         text,
    lease_until         timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz DEFAULT now(),
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_activity_at    timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    UNIQUE (repo_id, pr_number)
);

-- Finds unconverged work quickly however many converged environments there are.
CREATE INDEX environments_unconverged ON environments (next_attempt_at)
    WHERE generation > observed_generation;
CREATE INDEX environments_status ON environments (status);

CREATE TABLE runs (
    id             bigserial PRIMARY KEY,
    environment_id bigint NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    action         text NOT NULL CHECK (action IN ('apply', 'destroy')),
    sha            text,
    generation     bigint NOT NULL,
    state          text NOT NULL DEFAULT 'running'
                   CHECK (state IN ('running', 'succeeded', 'failed', 'superseded', 'interrupted', 'abandoned')),
    owner          text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    exit_code      integer,
    error          text
);
CREATE INDEX runs_environment ON runs (environment_id, id DESC);

CREATE TABLE run_logs (
    run_id bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq    integer NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    line   text NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE deliveries (
    id          text PRIMARY KEY,
    event       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_received ON deliveries (received_at);
