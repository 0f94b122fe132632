"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from ghapp.config import Settings
from ghapp.db.state_role import StateRole

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
# Terraform's state role: empty until migrations are done (or when it cannot be made), then the one role. A list
# because a started application's items must not be replaced.
STATE_ROLE: web.AppKey[list[StateRole]] = web.AppKey("state_role")
READY = web.AppKey("ready", asyncio.Event)  # set once migrations are applied
RECONCILER = web.AppKey("reconciler", object)
# What to let finish at shutdown: each takes the grace in seconds; all run together, before the cleanup.
DRAINS: web.AppKey[list[Callable[[float], Awaitable[None]]]] = web.AppKey("drains")
