"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from ghapp.config import Settings
from ghapp.db.state_role import StateRole
from ghapp.github.client import GitHubApp
from ghapp.web.intake import GroupCommit

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
# Terraform's state role: empty until migrations are done (or when it cannot be made), then the one role. A list
# because a started application's items must not be replaced.
STATE_ROLE: web.AppKey[list[StateRole]] = web.AppKey("state_role")
READY = web.AppKey("ready", asyncio.Event)  # set once migrations are applied
RECONCILER = web.AppKey("reconciler", object)
INTAKE = web.AppKey("intake", GroupCommit)  # the group commit of webhook deliveries
GITHUB = web.AppKey("github", GitHubApp)  # the App client (online only): one token cache, ETag cache and budget
