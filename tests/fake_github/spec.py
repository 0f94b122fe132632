"""The REST description the fake serves: loading it, finding the operation of a request (with the contents-path
special case), and openapi-core's view of requests and responses."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.finders import APICallPathFinder

SPEC_PATH = Path(__file__).resolve().parents[1] / "github" / "openapi" / "github-subset.json"
GITHUB_SERVER = "https://api.github.com"  # the description's server; requests are matched as if sent there
# Quirk: openapi-core's path templates match one segment per variable, so `contents/{path}` never matches a path
# holding slashes (`.github/preview.yml`), which GitHub accepts. Such a path is matched with its slashes encoded.
_CONTENTS = re.compile(r"^(/repos/[^/]+/[^/]+/contents/)(.+)$")


@functools.cache
def openapi() -> OpenAPI:
    """The description, loaded once per process (about 0.3 s), with GitHub's one nullable-enum quirk patched."""
    spec = json.loads(SPEC_PATH.read_text())
    # Quirk: GitHub marks check-run `conclusion` as `nullable: true` but its `enum` lacks null. openapi-core follows
    # the OAS 3.0.3 clarification (null is valid only if the enum lists it:
    # https://github.com/OAI/OpenAPI-Specification/blob/main/proposals/2019-10-31-Clarify-Nullable.md), so every
    # queued or in-progress check run GitHub really returns ("conclusion": null) would fail response validation.
    for name in ("check-run", "check-suite"):
        conclusion = spec["components"]["schemas"][name]["properties"]["conclusion"]
        if conclusion.get("nullable") and None not in conclusion["enum"]:
            conclusion["enum"].append(None)
    # Quirk: the contents API's JSON answer is `oneOf` a directory (an array) or a file, symlink or submodule, with a
    # `discriminator` on the property `type` that maps "array" to the directory: an array has no properties, so
    # openapi-core rejects every directory listing. `oneOf` alone tells them apart.
    content = spec["paths"]["/repos/{owner}/{repo}/contents/{path}"]["get"]["responses"]["200"]["content"]
    content["application/json"]["schema"].pop("discriminator", None)
    # Quirk: the rate-limit headers declare `format: timestamp`, which no validator knows (an integer is sent).
    for header in spec["components"].get("headers", {}).values():
        if header.get("schema", {}).get("format") == "timestamp":
            del header["schema"]["format"]
    return OpenAPI.from_dict(spec)


@functools.cache
def operation_ids() -> frozenset[str]:
    return frozenset(
        op["operationId"]
        for item in json.loads(SPEC_PATH.read_text())["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    )


@functools.cache
def _finder() -> APICallPathFinder:
    return APICallPathFinder(openapi().spec)


def spec_path(path: str) -> str:
    """The path as openapi-core can match it: a contents path's slashes encoded (see _CONTENTS)."""
    if m := _CONTENTS.match(path):
        return m[1] + quote(m[2], safe="")
    return path


@dataclass
class Found:
    operation_id: str
    params: dict[str, str]


def find(method: str, path: str) -> Found:
    """The operation a request is for; raises openapi-core's PathError when none matches."""
    found = _finder().find(method.lower(), GITHUB_SERVER + spec_path(path))
    params = dict(found.path_result.variables)
    if m := _CONTENTS.match(path):
        params["path"] = m[2]
    return Found(found.operation["operationId"], params)


class SpecRequest:
    """A request as openapi-core sees it (its `Request` protocol), addressed to GitHub's server."""

    host_url = GITHUB_SERVER

    def __init__(self, request: web.Request, body: bytes | None):
        self.method = request.method.lower()
        self.path = spec_path(request.path)
        self.body = body
        self.content_type = request.headers.get("Content-Type", "").lower()
        self.parameters = RequestParameters(query=request.query, header=request.headers, cookie={})


class SpecResponse:
    def __init__(self, status: int, data: bytes, headers: CIMultiDict, content_type: str = "application/json"):
        self.status_code = status
        self.data = data
        self.headers = headers
        self.content_type = content_type if data else ""


def explain(error: Exception) -> str:
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        where = str(error).split(":")[0]
        return "; ".join(
            f"{where} at '{'/'.join(map(str, e.absolute_path)) or '(root)'}': {e.message}" for e in schema_errors
        )
    return f"{error} ({cause})" if cause is not None else str(error)
