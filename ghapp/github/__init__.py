"""Talking to GitHub: App authentication, retries, and publishing state to pull requests."""
