-- Sleep and wake (issue 11): when a request asked a sleeping preview to wake (cleared once it is active again; the
-- wake latency is measured from it), and the index the idle sleeper scans: only active previews that are awake.
ALTER TABLE environments ADD COLUMN wake_requested_at timestamptz;

CREATE INDEX environments_awake ON environments (id) WHERE status = 'active' AND NOT desired_sleeping;
-- (`/preview sleep` and `/preview wake` are in the commands' CHECK since migration 016.)
