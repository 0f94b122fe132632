"""The preview gateway: every preview at `<environment_name>.<preview domain>`, one reverse proxy on one machine
(ghapp/gateway/app.py describes it and the hooks other parts plug into)."""
