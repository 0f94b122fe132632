"""The JSON Schemas ghapp publishes (package data): `.github/preview.yml` version 1."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

PREVIEW_V1 = "preview.v1.schema.json"


@functools.cache
def preview_v1() -> dict[str, Any]:
    """The schema of `.github/preview.yml` version 1, as shipped in the package."""
    schema: dict[str, Any] = json.loads(resources.files(__package__).joinpath(PREVIEW_V1).read_text())
    return schema
