"""`python -m bench.rules_paths`: the cost of the `paths` rule on a pull request at GitHub's file limit (pure, no
I/O): 3,000 changed files, none matching 5 gitignore-like patterns (the worst case: every file is tried)."""

from __future__ import annotations

import statistics
import time

from ghapp.core.repoconfig import RepoConfig
from ghapp.core.rules import MAX_PULL_FILES, held_by_paths

FILES = [f"src/module{i // 50}/sub{i % 7}/file{i}.py" for i in range(MAX_PULL_FILES)]
CONFIG = RepoConfig(paths=("app/**", "infra/**/*.tf", "!**/*.md", "Dockerfile", "charts"))


def main() -> None:
    times = []
    for _ in range(50):
        started = time.perf_counter()
        held = held_by_paths(CONFIG, FILES)
        times.append(time.perf_counter() - started)
    assert held is not None
    print(
        f"paths: {len(FILES)} files x {len(CONFIG.paths)} patterns, none matching: "
        f"median {statistics.median(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
