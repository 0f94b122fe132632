"""Benchmark: checking a commit's code out (`source: true`, ghapp/sources.py). Run by hand:
`python -m bench.source_checkout [--files 5000] [--megabytes 50]`; prints Markdown tables.

Measures, on an archive built in memory (half text that compresses, half random bytes that does not):
- the time of one checkout (write the archive, extract it checking every member, make it read-only, rename it
  into place), median of 5, and the peak of the process's resident memory (it must not grow with the archive);
- 8 environments asking for the same commit at once: one archive written, and how long the last one waited;
- how long a gzip bomb takes to be refused at the default limits (a single 10 GiB file: from its header; many
  zero files: once GHAPP_SOURCE_MAX_BYTES is extracted)."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from ghapp.sources import SourceLimits, Sources, UnsafeArchive
from tests.test_policy import environment

SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


class Archive:
    """A repository whose every commit is these archive bytes; counts the archives written."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    async def read(self, env, repository, path, ref):
        return None

    async def tarball(self, env, sha: str, destination: str) -> None:
        self.calls += 1
        await asyncio.to_thread(Path(destination).write_bytes, self.data)


def build(files: int, total: int) -> bytes:
    out = io.BytesIO()
    size = max(1, total // files)
    words = b"def handler(request):\n    return render(request, 'page.html', {'items': items})\n"
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        for i in range(files):
            data = (words * (size // len(words) + 1))[:size] if i % 2 else os.urandom(size)
            info = tarfile.TarInfo(f"o-r-ec26c3e/dir{i % 50}/sub{i % 7}/file{i}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bomb(files: int, each: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=9) as tar:
        zeros = bytes(each)
        for i in range(files):
            info = tarfile.TarInfo(f"o-r-ec26c3e/zeros{i}")
            info.size = each
            tar.addfile(info, io.BytesIO(zeros))
    return out.getvalue()


def huge_header() -> bytes:
    """A tar header announcing a 10 GiB file, and no data: the size is read from the header."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("o-r-ec26c3e/huge")
        info.size = 10 * 1024**3
        tar.addfile(info)  # no file object: only the header is written
    return out.getvalue()


def row(measure: str, value: str) -> None:
    print(f"| {measure} | {value} |")


async def timed_checkout(root: Path, data: bytes) -> float:
    sources = Sources(root, Archive(data), SourceLimits())
    started = time.perf_counter()
    await sources.checkout(environment(id=1, repo_id=1), SHA)
    return time.perf_counter() - started


async def main(files: int, megabytes: int) -> None:
    data = build(files, megabytes * 1024**2)
    print(f"archive: {files} files, {megabytes} MiB extracted, {len(data) / 1024**2:.1f} MiB compressed\n")
    with tempfile.TemporaryDirectory(prefix="ghapp-bench-sources-") as tmp:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = [await timed_checkout(Path(tmp) / f"run{i}", data) for i in range(5)]
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        median = statistics.median(times)
        print("| measure | value |\n|---|---|")
        row("one checkout, median of 5", f"{median:.2f} s (min {min(times):.2f}, max {max(times):.2f})")
        row("throughput", f"{megabytes / median:.0f} MiB/s extracted")
        row("peak RSS growth over the 5 checkouts", f"{(rss_after - rss_before) / 1024:.0f} MiB")

        archive = Archive(data)
        sources = Sources(Path(tmp) / "concurrent", archive)
        envs = [environment(id=i, repo_id=1) for i in range(8)]
        started = time.perf_counter()
        await asyncio.gather(*(sources.checkout(env, SHA) for env in envs))
        waited = time.perf_counter() - started
        row("8 environments, one commit, at once", f"{archive.calls} archive written; all served after {waited:.2f} s")

        for label, hostile in (
            ("bomb: one 10 GiB file (header only)", huge_header()),
            ("bomb: 12 files of 100 MiB of zeros (default 1 GiB limit)", bomb(12, 100 * 1024**2)),
        ):
            started = time.perf_counter()
            try:
                await timed_checkout(Path(tmp) / "bomb", hostile)
                outcome = "ACCEPTED (wrong)"
            except UnsafeArchive as e:
                outcome = f"refused: {e}"
            took = time.perf_counter() - started
            row(f"{label}, {len(hostile) / 1024:.0f} KiB compressed", f"{took:.2f} s, {outcome}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.files, args.megabytes))
