"""The App itself: its JWT-authenticated endpoints, installations, installation tokens, the manifest flow."""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable

from tests.fake_github.state import (
    DEFAULT_PERMISSIONS,
    RANK,
    Ctx,
    Installation,
    Reply,
    Token,
    handles,
    iso,
    node_id,
)


class AppsMixin:
    """Apps, installations and installation tokens."""

    def add_installation(
        self,
        id: int,
        account: str,
        repos: Iterable[str] = (),
        *,
        suspended: bool = False,
        permissions: dict[str, str] | None = None,
        account_type: str = "Organization",
    ) -> Installation:
        """An installation of the App on `account` for `repos` ("owner/name", or "name" under `account`)."""
        full_names = [r if "/" in r else f"{account}/{r}" for r in repos]
        for full_name in full_names:
            if full_name.lower() not in self.repos:
                self.add_repo(full_name)
        installation = Installation(
            id,
            account,
            [self.repos[f.lower()].full_name for f in full_names],
            suspended,
            dict(permissions or DEFAULT_PERMISSIONS),
            account_type,
        )
        self.installations[id] = installation
        return installation

    def add_manifest_code(self, code: str) -> None:
        """A one-time code for `POST /app-manifests/{code}/conversions`, which returns this App's credentials."""
        self._manifest_codes.add(code)

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired (the next use gets 401)."""
        for token in self.tokens:
            token.expires_at = min(token.expires_at, self.clock() - 1)

    @handles("apps/get-authenticated")
    def _get_app(self, ctx: Ctx):
        return 200, self._app_json() | {"installations_count": len(self.installations)}, {}

    @handles("apps/create-installation-access-token")
    def _create_token(self, ctx: Ctx):
        installation = self.installations.get(int(ctx.params["installation_id"]))
        if installation is None:
            raise Reply(404, "Not Found")
        if installation.suspended:
            raise Reply(403, "This installation has been suspended")
        body = ctx.body or {}
        repositories = None
        if "repositories" in body or "repository_ids" in body:
            own = {self.repos[f.lower()].name: f for f in installation.repositories}
            by_id = {self.repos[f.lower()].id: f for f in installation.repositories}
            names, ids = body.get("repositories", []), body.get("repository_ids", [])
            if any(n.split("/")[-1] not in own for n in names) or any(i not in by_id for i in ids):
                raise Reply(
                    422,
                    "There is at least one repository that does not exist or is not accessible to "
                    "the parent installation.",
                )
            repositories = {own[n.split("/")[-1]] for n in names} | {by_id[i] for i in ids}
        permissions = dict(installation.permissions)
        if "permissions" in body:
            granted = installation.permissions
            if any(RANK[v] > RANK.get(granted.get(k, ""), 0) for k, v in body["permissions"].items()):
                raise Reply(422, "The permissions requested are not granted to this installation.")
            permissions = {"metadata": "read", **body["permissions"]}
        token = Token(
            "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
            installation.id,
            self.clock() + self.token_lifetime,
            repositories,
            permissions,
        )
        self.tokens.append(token)
        data = {
            "token": token.token,
            "expires_at": iso(token.expires_at),
            "permissions": permissions,
            "repository_selection": "selected",
        }
        if repositories is not None:
            data["repositories"] = [self._repo_json(self.repos[f.lower()]) for f in sorted(repositories)]
        return 201, data, {}

    @handles("apps/get-repo-installation")
    def _get_repo_installation(self, ctx: Ctx):
        installation = next((i for i in self.installations.values() if ctx.repo.full_name in i.repositories), None)
        if installation is None:
            raise Reply(404, "Not Found")
        return 200, self._installation_json(installation), {}

    @handles("apps/list-repos-accessible-to-installation")
    def _list_installation_repos(self, ctx: Ctx):
        names = self.installations[ctx.token.installation_id].repositories
        repos = [self.repos[f.lower()] for f in names if ctx.token.repositories is None or f in ctx.token.repositories]
        page, links = self._paginate(ctx, sorted(repos, key=lambda r: r.full_name.lower()))
        return (
            200,
            {
                "total_count": len(repos),
                "repository_selection": "selected",
                "repositories": [self._repo_json(r) for r in page],
            },
            links,
        )

    @handles("apps/create-from-manifest")
    def _convert_manifest(self, ctx: Ctx):
        code = ctx.params["code"]
        if code not in self._manifest_codes:
            raise Reply(404, "Not Found")
        self._manifest_codes.discard(code)
        return (
            201,
            self._app_json()
            | {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "webhook_secret": self.webhook_secret,
                "pem": self.private_key_pem,
            },
            {},
        )

    def _app_json(self, slug: str | None = None) -> dict:
        """This App, or with `slug` another App (one that reports CI check runs, say)."""
        created = iso(self._started - 30 * 86400)
        if slug is not None and slug != self.slug:
            return self._app_json() | {
                "id": self._other_app_id(slug),
                "slug": slug,
                "node_id": node_id("A", self._other_app_id(slug)),
                "client_id": f"Iv23li{hashlib.sha1(slug.encode()).hexdigest()[:14]}",
                "owner": self._user_json(slug, "Organization"),
                "name": slug,
                "external_url": f"https://{slug}.example.com",
                "html_url": f"https://github.com/apps/{slug}",
            }
        return {
            "id": self.app_id,
            "slug": self.slug,
            "node_id": node_id("A", self.app_id),
            "client_id": self.client_id,
            "owner": self._user_json(self.app_owner, "Organization"),
            "name": self.name,
            "description": "A preview environment for every pull request",
            "external_url": f"https://{self.slug}.example.com",
            "html_url": f"https://github.com/apps/{self.slug}",
            "created_at": created,
            "updated_at": created,
            "permissions": dict(DEFAULT_PERMISSIONS),
            "events": ["check_run", "issue_comment", "pull_request", "push"],
        }

    def _installation_json(self, installation: Installation) -> dict:
        created = iso(self._started - 7 * 86400)
        base = self.base_url
        account = installation.account
        return {
            "id": installation.id,
            "account": self._user_json(account, installation.account_type),
            "repository_selection": "selected",
            "access_tokens_url": f"{base}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{base}/installation/repositories",
            "html_url": f"https://github.com/organizations/{account}/settings/installations/{installation.id}",
            "app_id": self.app_id,
            "app_slug": self.slug,
            "client_id": self.client_id,
            "target_id": self._user_id(account),
            "target_type": installation.account_type,
            "permissions": dict(installation.permissions),
            "events": ["check_run", "issue_comment", "pull_request", "push"],
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": self._user_json(account) if installation.suspended else None,
            "suspended_at": created if installation.suspended else None,
        }

    def _other_app_id(self, slug: str) -> int:
        return 100_000 + int(hashlib.sha1(slug.encode()).hexdigest()[:5], 16)
