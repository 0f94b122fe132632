"""One strict fake of the GitHub REST API for every test: every operation of tests/github/openapi/github-subset.json
on a real aiohttp server, with in-memory state, GitHub's authentication (App JWT, installation tokens, user tokens
from a fake OAuth web flow), pagination, ETags, rate-limit headers and failure injection.

Strict: every request and every response is validated against the OpenAPI description with openapi-core; a
request that matches no operation or fails validation is answered as GitHub would (404/422) and recorded as a
violation, and the `fake_github` fixture fails the test at teardown on any violation or unmet expectation.

Modules: `spec` (the description), `state` (dataclasses), one per resource group (`apps`, `checks`, `issues`,
`pulls`, `deployments`, `repos`, `users`), `server` (dispatch, authentication, ETags, rate limits, recording)."""

from tests.fake_github.server import FakeGitHub, fake_github
from tests.fake_github.spec import SPEC_PATH
from tests.fake_github.state import Call, Commit, Installation, Pull, Repo, Token, User

__all__ = ["SPEC_PATH", "Call", "Commit", "FakeGitHub", "Installation", "Pull", "Repo", "Token", "User", "fake_github"]
