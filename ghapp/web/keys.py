"""Typed keys for everything the aiohttp application holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from ghapp.config import Settings
from ghapp.core.repoconfig import RepositoryFiles
from ghapp.db.state_role import StateRole
from ghapp.github.client import GitHubApp
from ghapp.sources import Sources
from ghapp.web.intake import GroupCommit
from ghapp.workers.resolve import ConfigurationReader, Resolver

if TYPE_CHECKING:
    from ghapp.gateway.app import Gateway
    from ghapp.web.auth import Throttle
    from ghapp.web.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)
# Terraform's state role: empty until migrations are done (or when it cannot be made), then the one role. A list
# because a started application's items must not be replaced.
STATE_ROLE: web.AppKey[list[StateRole]] = web.AppKey("state_role")
READY = web.AppKey("ready", asyncio.Event)  # set once migrations are applied
RECONCILER = web.AppKey("reconciler", object)
# Where `.github/preview.yml` is read offline (the demo's sample repository); online, GitHub's contents API.
REPOSITORY_FILES: web.AppKey[RepositoryFiles] = web.AppKey("repository_files")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
THROTTLE: web.AppKey[Throttle] = web.AppKey("throttle")  # failed sign-ins per client
STREAMS_CLOSING = web.AppKey("streams_closing", asyncio.Event)  # set on shutdown: log streams end
# What to let finish at shutdown: each takes the grace in seconds; all run together, before the cleanup.
DRAINS: web.AppKey[list[Callable[[float], Awaitable[None]]]] = web.AppKey("drains")
INTAKE = web.AppKey("intake", GroupCommit)  # the group commit of webhook deliveries
GITHUB = web.AppKey("github", GitHubApp)  # the App client (online only): one token cache, ETag cache and budget
# The pull request's code at a commit (`source: true`); given to create_app (the demo), else made by the workers.
SOURCES = web.AppKey("sources", Sources)
RESOLVER = web.AppKey("resolver", Resolver)  # given to create_app (the demo), else the default resolver
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")  # the preview gateway (`create_app(..., gateway=True)`)
# How the reconciler reads a repository's configuration; unset: ghapp's default (set before start, e.g. by tests).
CONFIGURATION = web.AppKey("configuration", ConfigurationReader)
