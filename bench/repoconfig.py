"""Reading `.github/preview.yml`: milliseconds per parse and validation of a typical file, the largest accepted
one, and hostile ones that are refused (`python -m bench.repoconfig`)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from ghapp.core.repoconfig import MAX_BYTES, MAX_NODES, ConfigProblem, parse
from ghapp.schemas import preview_v1

ROOT = Path(__file__).resolve().parent.parent


def per_parse_ms(data: bytes, rounds: int) -> float:
    schema = preview_v1()
    started = time.perf_counter()
    for _ in range(rounds):
        try:
            parse(data, schema)
        except ConfigProblem:
            pass
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    example = (ROOT / "docs" / "configuration.md").read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    widest = "inputs:\n" + "".join(f"  k{i:05d}: value\n" for i in range(MAX_NODES // 2 - 1))
    flood = ("inputs:\n" + "".join(f"  k{i:05d}: value\n" for i in range(5000)))[: MAX_BYTES - 64]
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    deep = "x: " + "[" * 10000 + "]" * 10000 + "\n"
    print(f"libyaml: {yaml.__with_libyaml__}")
    for name, text, rounds in [
        ("the documented example", example, 200),
        (f"{MAX_NODES // 2 - 1} inputs (the most accepted)", widest, 10),
        ("64 KiB of inputs (refused: nodes)", flood[: flood.rfind("\n") + 1], 10),
        ("billion laughs (refused: anchors)", bomb, 200),
        ("10,000 nested lists (refused: depth)", deep, 20),
    ]:
        print(f"{name:45} {len(text.encode()):6} B  {per_parse_ms(text.encode(), rounds):8.2f} ms")


if __name__ == "__main__":
    main()
