"""Webhook deliveries as GitHub sends them: signed with the webhook secret and POSTed (`ghapp receive`, the demo)."""

from __future__ import annotations

import hashlib
import hmac
import uuid


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send(
    url: str, event: str, body: bytes, secret: str | None, delivery_id: str | None = None
) -> tuple[int, str]:
    """POST a delivery the way GitHub does, signed when a secret is given."""
    import aiohttp

    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "User-Agent": "GitHub-Hookshot/ghapp-receive",
    }
    if secret:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()
