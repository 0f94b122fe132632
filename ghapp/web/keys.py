"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from ghapp.config import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
READY = web.AppKey("ready", asyncio.Event)  # set once migrations are applied
RECONCILER = web.AppKey("reconciler", object)
