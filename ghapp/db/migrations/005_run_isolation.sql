-- Where each run log line came from: ghapp's and Terraform's own lines ('terraform') or a provisioner's output
-- ('provisioner', e.g. a preview's own code): only the former may be shown on GitHub.
ALTER TABLE run_logs ADD COLUMN source text NOT NULL DEFAULT 'terraform'
    CHECK (source IN ('terraform', 'provisioner'));
