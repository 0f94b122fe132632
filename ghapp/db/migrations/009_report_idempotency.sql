-- Commands act at most once: each effect (reaction, desired-state write, reply) is recorded in `steps` as it
-- happens, and a retry skips what is recorded. The lease (next_attempt_at while attempts counts the claim) is
-- short and renewed while the command is carried out, so one whose replica died is taken over within seconds.
ALTER TABLE commands ADD COLUMN steps jsonb NOT NULL DEFAULT '{}';
