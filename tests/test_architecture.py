"""The layering of docs/architecture.md, checked: each layer imports only the layers before it, SQL lives only in
ghapp/db and is never built by string formatting, and the pure core imports nothing with I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parent.parent / "ghapp"

# In order: a module may import its own layer and those before it, never one after it.
LAYERS = [
    ("core", ["ghapp.core"]),
    ("base", ["ghapp.config", "ghapp.isolation", "ghapp.logsafe"]),
    ("db", ["ghapp.db"]),
    ("outside", ["ghapp.github", "ghapp.terraform", "ghapp.bundled_terraform"]),
    ("workers", ["ghapp.workers"]),
    ("web", ["ghapp.web", "ghapp.gateway"]),
    ("entry", ["ghapp.cli", "ghapp.demo", "ghapp.deliveries", "ghapp.app_manifest", "ghapp.__main__", "ghapp"]),
]
# The pure core: standard library modules that do no I/O, nothing else.
CORE_MAY_IMPORT = {
    "__future__",
    "dataclasses",
    "datetime",
    "enum",
    "hashlib",
    "json",
    "logging",
    "re",
    "typing",
    "collections",
    "unicodedata",
    "urllib",
    "html",
    "math",
    "itertools",
    "functools",
    "string",
    "textwrap",
}
SQL = re.compile(
    r"\b(SELECT\s.*\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|pg_notify|pg_\w*advisory)\b",
    re.IGNORECASE | re.DOTALL,
)


def modules() -> list[tuple[str, Path, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found.append((name, path, ast.parse(path.read_text(), str(path))))
    return found


def layer_of(module: str) -> int:
    for index, (_name, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer of docs/architecture.md: add it to LAYERS there and here")


def imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ghapp":
                names += [f"ghapp.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def test_every_module_imports_only_its_own_layer_or_those_before_it():
    wrong = []
    for name, _path, tree in modules():
        mine = layer_of(name)
        for target in imports(tree):
            if target.startswith("ghapp") and layer_of(target) > mine:
                wrong.append(f"{name} ({LAYERS[mine][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_nothing_with_io():
    wrong = []
    for name, _path, tree in modules():
        if layer_of(name) != 0:
            continue
        for target in imports(tree):
            if not target.startswith("ghapp.core") and target.split(".")[0] not in CORE_MAY_IMPORT:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_sql_lives_only_in_the_db_package():
    wrong = []
    for name, path, tree in modules():
        if name.startswith("ghapp.db"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                wrong.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    assert not wrong, "\n".join(wrong)


def test_sql_is_never_built_by_string_formatting():
    wrong = []
    for name, path, tree in modules():
        for node in ast.walk(tree):
            pieces: list[str] = []
            if isinstance(node, ast.JoinedStr):
                pieces = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
                pieces = [n.value for n in (node.left, node.right) if isinstance(n, ast.Constant)]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
            ):
                pieces = [node.func.value.value]
            if any(isinstance(p, str) and SQL.search(p) for p in pieces):
                wrong.append(f"{name} {path.name}:{node.lineno}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_violation():
    """The rules above are not vacuous: a made-up module breaking each is caught."""
    bad = ast.parse("from ghapp.web import keys\nimport asyncpg\nQ = f'SELECT {x} FROM environments'\n")
    assert [t for t in imports(bad) if t.startswith("ghapp") and layer_of(t) > layer_of("ghapp.db.reads")]
    assert "asyncpg" in imports(bad) and "asyncpg" not in CORE_MAY_IMPORT
    formatted = next(n for n in ast.walk(bad) if isinstance(n, ast.JoinedStr))
    assert SQL.search("".join(v.value for v in formatted.values if isinstance(v, ast.Constant)))
