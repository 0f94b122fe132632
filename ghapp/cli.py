"""`ghapp` command line: serve, demo, receive, migrate, envs, destroy, setup, access-token."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from pathlib import Path

from ghapp import deliveries
from ghapp.config import ConfigError, Settings, unknown_variables
from ghapp.core.contract import short_sha
from ghapp.logsafe import SafeFormatter

log = logging.getLogger("ghapp")


def _setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def serve(settings: Settings) -> int:
    from aiohttp import web

    from ghapp.web.app import create_app

    settings.check_serve()
    if not settings.webhook_secret:
        log.warning("GITHUB_WEBHOOK_SECRET is unset: webhook signatures are NOT checked (offline mode only)")
    if settings.offline:
        log.info("offline mode (no GITHUB_APP_ID): what would be shown on pull requests goes to this log")
    if settings.access is None and not settings.sign_in_configured:
        log.warning(
            "previews are public by default: GitHub sign-in is not configured (GITHUB_CLIENT_ID/SECRET). A "
            "repository asking for `access: repository` gets 503 until it is; set GHAPP_ACCESS=public to silence this"
        )
    web.run_app(
        create_app(settings, gateway=True),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_grace + 5,
    )
    return 0


def receive(settings: Settings, event: str, payload: Path, url: str | None) -> int:
    body = payload.read_bytes()
    target = url or f"http://{settings.host}:{settings.port}/webhooks"
    status, text = asyncio.run(deliveries.send(target, event, body, settings.webhook_secret))
    print(f"{status} {text}")
    return 0 if status < 300 else 1


async def _with_pool(settings: Settings, work):
    from ghapp import db

    async with db.database_url(settings) as url:
        pool = await db.create_pool(url, min_size=1, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()


def migrate(settings: Settings) -> int:
    from ghapp import db

    applied = asyncio.run(_with_pool(settings, db.migrate))
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "the schema is up to date")
    return 0


def envs(settings: Settings, as_json: bool) -> int:
    from ghapp import db
    from ghapp.db import reads
    from ghapp.web.api import environment_json

    async def work(pool):
        await db.migrate(pool)
        async with pool.acquire() as conn:
            return await reads.list_environments(conn, limit=10_000)

    found = asyncio.run(_with_pool(settings, work))
    if as_json:
        print(json.dumps([environment_json(e, settings.preview_site) for e in found], indent=2))
        return 0
    if not found:
        print("no environments")
        return 0
    print(f"{'ID':>5}  {'PULL REQUEST':<32} {'STATUS':<10} {'SHA':<8} URL")
    for e in found:
        print(
            f"{e.id:>5}  {f'{e.repository}#{e.pr_number}':<32} {e.status:<10} {short_sha(e.deployed_sha):<8} "
            f"{e.preview_url or ''}"
        )
    return 0


def destroy(settings: Settings, target: str) -> int:
    from ghapp import db
    from ghapp.db import desired, reads

    match = re.fullmatch(r"([\w.-]+/[\w.-]+)#(\d+)", target)
    if not match:
        print(f"expected OWNER/REPO#NUMBER, got {target!r}", file=sys.stderr)
        return 2

    async def work(pool):
        await db.migrate(pool)
        async with pool.acquire() as conn:
            env = await reads.find_environment(conn, match[1], int(match[2]))
            if env is not None:
                await desired.request_destroy(conn, env.id)
            return env

    env = asyncio.run(_with_pool(settings, work))
    if env is None:
        print(f"no environment for {target}", file=sys.stderr)
        return 1
    print(f"{target}: destroy requested (environment {env.id}); a running `ghapp serve` carries it out")
    return 0


def setup(settings: Settings, args: argparse.Namespace) -> int:
    from ghapp.app_manifest import run_setup

    public_url = (args.public_url or settings.public_url or "").rstrip("/")
    if not public_url.startswith("https://"):
        raise ConfigError("GitHub must reach the app over HTTPS: pass --public-url https://... or set GHAPP_PUBLIC_URL")
    created = asyncio.run(
        run_setup(
            args.manifest,
            host=settings.host,
            port=args.port or settings.port,
            public_url=public_url,
            api_url=settings.github_api_url,
            directory=Path.cwd(),
            org=args.org,
        )
    )
    print(
        f"Created the App {created['slug']} (id {created['id']}); its key is in {created['key']} and .env has "
        "GITHUB_APP_ID, GITHUB_PRIVATE_KEY_PATH, GITHUB_WEBHOOK_SECRET, GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET "
        "(both files mode 0600)."
    )
    return 0


def access_token(settings: Settings, args: argparse.Namespace) -> int:
    """`ghapp access-token create OWNER/REPO | list [OWNER/REPO] | revoke ID`: tokens for automation."""
    from ghapp import db
    from ghapp.config import parse_duration
    from ghapp.db import access as store
    from ghapp.gateway.access import create_access_token, valid_repository

    if args.action in ("create", "list") and args.target is not None and not valid_repository(args.target):
        print(f"expected OWNER/REPO, got {args.target!r}", file=sys.stderr)
        return 2
    if args.action == "create" and args.target is None:
        print("ghapp access-token create OWNER/REPO: the repository whose previews it opens", file=sys.stderr)
        return 2
    if args.action == "revoke" and (args.target is None or not args.target.isdigit()):
        print("ghapp access-token revoke ID: the id `ghapp access-token list` shows", file=sys.stderr)
        return 2
    try:
        ttl = parse_duration(args.expires) if args.expires else None
    except ValueError as e:
        print(f"--expires: {e}", file=sys.stderr)
        return 2

    async def work(pool):
        await db.migrate(pool)
        async with pool.acquire() as conn:
            if args.action == "create":
                return await create_access_token(conn, args.target, args.description, ttl)
            if args.action == "revoke":
                return await store.revoke_token(conn, int(args.target))
            return await store.list_tokens(conn, args.target)

    result = asyncio.run(_with_pool(settings, work))
    if args.action == "create":
        token, made = result
        print(token)
        print(
            f"token {made.id} opens the previews of {made.repository}"
            f"{f' until {made.expires_at:%Y-%m-%d %H:%M} UTC' if made.expires_at else ''}; send it as the "
            "X-Ghapp-Access-Token header (shown once: ghapp keeps only its hash)",
            file=sys.stderr,
        )
        return 0
    if args.action == "revoke":
        if result is None:
            print(f"no token {args.target}", file=sys.stderr)
            return 1
        print(f"token {result.id} ({result.repository}) revoked")
        return 0
    if not result:
        print("no access tokens")
        return 0
    print(f"{'ID':>5}  {'REPOSITORY':<32} {'STATE':<8} {'CREATED':<17} DESCRIPTION")
    for t in result:
        state = "revoked" if t.revoked_at else "active"
        print(f"{t.id:>5}  {t.repository:<32} {state:<8} {t.created_at:%Y-%m-%d %H:%M} {t.description}")
    return 0


def _protect(settings: Settings) -> None:
    """Before anything runs: not dumpable, the data dir and secret files closed, secrets out of the environment."""
    from ghapp import isolation

    key_path = os.environ.get("GITHUB_PRIVATE_KEY_PATH")
    isolation.protect(settings.data_dir, [Path(".env"), *([Path(key_path)] if key_path else [])])
    isolation.drop_secrets()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghapp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the app: webhooks, workers, API")
    demo = sub.add_parser("demo", help="the embedded default end to end on this machine")
    demo.add_argument("--port", type=int, default=None, help="listen port (default GHAPP_PORT or 8080)")
    rec = sub.add_parser("receive", help="sign a payload and POST it to a running app")
    rec.add_argument("--event", required=True, help="the X-GitHub-Event name, e.g. pull_request")
    rec.add_argument("payload", type=Path)
    rec.add_argument("--url", help="default: http://GHAPP_HOST:GHAPP_PORT/webhooks")
    sub.add_parser("migrate", help="apply database migrations")
    env_cmd = sub.add_parser("envs", help="list environments")
    env_cmd.add_argument("--json", action="store_true")
    des = sub.add_parser("destroy", help="destroy the environment of OWNER/REPO#N")
    des.add_argument("target")
    setup = sub.add_parser("setup", help="create the GitHub App from app.yml (App-manifest flow)")
    setup.add_argument("--manifest", type=Path, default=Path("app.yml"))
    setup.add_argument("--org", help="create the App under this organization (default: your account)")
    setup.add_argument("--public-url", help="where GitHub reaches this app (default GHAPP_PUBLIC_URL)")
    setup.add_argument("--port", type=int, default=None, help="local port for the setup page (default GHAPP_PORT)")
    tokens = sub.add_parser("access-token", help="tokens that let automation (CI) through to one repository's previews")
    tokens.add_argument("action", choices=["create", "list", "revoke"])
    tokens.add_argument("target", nargs="?", help="OWNER/REPO (create, list) or the token's ID (revoke)")
    tokens.add_argument("--description", default="", help="what the token is for (create)")
    tokens.add_argument("--expires", help="a lifetime such as 30d (create; default: until revoked)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        for warning in unknown_variables():  # first: a misspelt name may be why the settings are wrong
            log.warning("%s", warning)
        settings = Settings.from_env()
        if args.command in ("serve", "demo"):
            _protect(settings)
        if args.command == "serve":
            return serve(settings)
        if args.command == "demo":
            from ghapp.demo import run_demo

            return run_demo(settings if args.port is None else settings.replace(port=args.port))
        if args.command == "receive":
            return receive(settings, args.event, args.payload, args.url)
        if args.command == "migrate":
            return migrate(settings)
        if args.command == "envs":
            return envs(settings, args.json)
        if args.command == "setup":
            return setup(settings, args)
        if args.command == "access-token":
            return access_token(settings, args)
        return destroy(settings, args.target)
    except ConfigError as e:
        print(f"ghapp: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
