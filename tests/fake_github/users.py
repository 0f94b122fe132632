"""Users: "Sign in with GitHub" (the OAuth web flow, `ghu_` tokens) and what a signed-in user may see."""

from __future__ import annotations

import secrets
import string
import time
from urllib.parse import quote, urlencode

from aiohttp import web

from tests.fake_github.state import (
    DOCS,
    Ctx,
    Installation,
    Reply,
    Repo,
    User,
    UserToken,
    handles,
    iso,
    node_id,
)


class UsersMixin:
    """Users, user-to-server tokens and the OAuth web flow."""

    def _user_json(self, login: str, kind: str | None = None) -> dict:
        uid = self._user_id(login)
        kind = kind or ("Bot" if login.endswith("[bot]") else "User")
        api = f"{self.base_url}/users/{quote(login)}"
        return {
            "login": login,
            "id": uid,
            "node_id": node_id("U", uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"https://github.com/{quote(login)}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _user_id(self, login: str) -> int:
        return self._users.setdefault(login.lower(), 9_000_000 + len(self._users) * 7 + 1)

    def add_user(self, login: str, *, name: str | None = None, email: str | None = None) -> User:
        """A person who can sign in; what they may read follows `set_permission` (public repositories: read)."""
        user = User(login, self._user_id(login), name, email)
        self.users[login.lower()] = user
        return user

    def user_token(self, login: str, *, lifetime: float = 8 * 3600) -> str:
        """A `ghu_` user-to-server token for `login` (as the OAuth flow would give), for tests that skip the flow."""
        if login.lower() not in self.users:
            self.add_user(login)
        token = UserToken(
            "ghu_" + _random(36), self.users[login.lower()].login, time.time() + lifetime, "ghr_" + _random(76)
        )
        self.user_tokens.append(token)
        return token.token

    def revoke_authorization(self, login: str) -> int:
        """The person revoked the App's authorization (GitHub settings → Applications): their user tokens stop
        working. Returns their user id, the `sender.id` of the `github_app_authorization` revoked event."""
        for token in self.user_tokens:
            if token.login.lower() == login.lower():
                token.expires_at, token.refresh_token = 0, ""
        return self._user_id(login)

    def sign_in_as(self, login: str | None) -> None:
        """Who the browser is signed in to GitHub as, for the OAuth authorize page (None: nobody, a login page)."""
        if login is not None and login.lower() not in self.users:
            self.add_user(login)
        self.browser_user = login

    # the OAuth web flow (https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app)

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        """GET /login/oauth/authorize: a signed-in browser is sent back to `redirect_uri` with `code` and `state`."""
        call = self._web_call(request, "web/oauth-authorize", None)
        query = request.query
        problems = []
        if query.get("client_id") != self.client_id:
            problems.append(f"client_id {query.get('client_id')!r} is not the App's")
        if not query.get("state"):
            problems.append("no state (the callback cannot be tied to the browser that started the sign-in)")
        if not query.get("redirect_uri", "").startswith(("http://", "https://")):
            problems.append(f"redirect_uri {query.get('redirect_uri')!r} is not an absolute http(s) URL")
        for problem in problems:
            self._violation(call, problem)
        if problems:
            call.status = 404
            return web.Response(status=404, text="The client_id, state or redirect_uri is wrong.")
        if self.browser_user is None:
            call.status = 200
            return web.Response(text="<title>Sign in to GitHub</title>", content_type="text/html")
        code = _random(20).lower()
        self._oauth_codes[code] = (self.browser_user, query["redirect_uri"], time.time() + 600)
        separator = "&" if "?" in query["redirect_uri"] else "?"
        call.status = 302
        location = query["redirect_uri"] + separator + urlencode({"code": code, "state": query["state"]})
        raise web.HTTPFound(location)

    async def _oauth_access_token(self, request: web.Request) -> web.Response:
        """POST /login/oauth/access_token: a code (or refresh token) for a `ghu_` token; errors are 200s, as GitHub's."""
        form = dict(await request.post()) if request.content_type != "application/json" else await request.json()
        call = self._web_call(
            request, "web/oauth-access-token", {k: v for k, v in form.items() if k != "client_secret"}
        )
        wants_json = "application/json" in request.headers.get("Accept", "")
        if not wants_json:
            self._violation(call, "no `Accept: application/json`: GitHub answers form-encoded text")
        error = None
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            error = ("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
        elif form.get("grant_type") == "refresh_token":
            old = next((t for t in self.user_tokens if t.refresh_token == form.get("refresh_token")), None)
            if old is None:
                error = ("bad_refresh_token", "The refresh token passed is incorrect or expired.")
            else:
                old.refresh_token, old.expires_at = "", 0  # refresh tokens are single-use; the old token ends
                login = old.login
        else:
            entry = self._oauth_codes.pop(form.get("code", ""), None)
            if entry is None or entry[2] < time.time():
                error = ("bad_verification_code", "The code passed is incorrect or expired.")
            elif form.get("redirect_uri") not in (None, entry[1]):
                error = ("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL.")
            else:
                login = entry[0]
        if error is not None:
            self._violation(call, f"GitHub refuses it: {error[0]}")
            data = {"error": error[0], "error_description": error[1], "error_uri": DOCS}
        else:
            token = self.user_token(login)
            refresh = self.user_tokens[-1].refresh_token
            data = {
                "access_token": token,
                "expires_in": 28800,
                "refresh_token": refresh,
                "refresh_token_expires_in": 15811200,
                "scope": "",
                "token_type": "bearer",
            }
        call.status = 200
        if wants_json:
            return web.json_response(data)
        return web.Response(text=urlencode(data), content_type="application/x-www-form-urlencoded")

    # handlers

    @handles("users/get-authenticated")
    def _get_authenticated_user(self, ctx: Ctx):
        user = self.users[ctx.user.login.lower()]
        created = iso(self._started - 1000 * 86400)
        return (
            200,
            self._user_json(user.login)
            | {
                "name": user.name,
                "company": None,
                "blog": "",
                "location": None,
                "email": user.email,
                "hireable": None,
                "bio": None,
                "public_repos": 0,
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": created,
                "updated_at": created,
            },
            {},
        )

    def _readable(self, login: str, installation: Installation) -> list[Repo]:
        """Repositories of an installation that a person can read (what their user token may see there)."""
        repos = [self.repos[f.lower()] for f in installation.repositories]
        return [r for r in repos if self._level(r, login) != "none"]

    @handles("apps/list-installations-for-authenticated-user")
    def _list_user_installations(self, ctx: Ctx):
        found = [i for i in self.installations.values() if self._readable(ctx.user.login, i)]
        page, links = self._paginate(ctx, found)
        return 200, {"total_count": len(found), "installations": [self._installation_json(i) for i in page]}, links

    @handles("apps/list-installation-repos-for-authenticated-user")
    def _list_user_installation_repos(self, ctx: Ctx):
        installation = self.installations.get(int(ctx.params["installation_id"]))
        repos = self._readable(ctx.user.login, installation) if installation else []
        if not repos:
            raise Reply(404, "Not Found")
        page, links = self._paginate(ctx, sorted(repos, key=lambda r: r.full_name.lower()))
        data = [
            self._repo_json(r) | {"permissions": self._permission_flags(self._level(r, ctx.user.login))} for r in page
        ]
        return 200, {"total_count": len(repos), "repository_selection": "selected", "repositories": data}, links


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))
