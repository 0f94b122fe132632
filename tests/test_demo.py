"""`ghapp demo` as a user runs it: a preview URL that answers, then nothing left behind however it is stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import pytest

from tests.support import ROOT, free_port, processes_in_dir, processes_with, wait_for


class Demo:
    def __init__(self, data_dir, terraform_bin):
        self.data_dir = data_dir
        env = {
            **os.environ,
            "GHAPP_DATA_DIR": str(data_dir),
            "GHAPP_PORT": str(free_port()),
            "GHAPP_GATEWAY_PORT": str(free_port()),
            "GHAPP_TERRAFORM_BIN": terraform_bin,
            "TF_VAR_port_base": str(31000 + os.getpid() % 5000),
        }
        for name in ("DATABASE_URL", "GITHUB_APP_ID", "GHAPP_TERRAFORM_MODULE"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ghapp", "demo"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def text(self) -> str:
        return "".join(self.output)

    async def preview_url(self) -> str:
        async def announced():
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited early:\n{self.text()}")
            return re.search(r"preview\s+(http://\S+)", self.text())

        return (await wait_for(announced, timeout=60, what="the demo's preview URL")).group(1)

    def leftovers(self) -> list[int]:
        """The demo's processes: named after its data dir, or running in it (the sample repository's server)."""
        return sorted({*processes_with(str(self.data_dir)), *processes_in_dir(self.data_dir)})

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()


@pytest.fixture
def demo(pg_dir, terraform_bin):
    started = []

    def start() -> Demo:
        d = Demo(pg_dir / "home", terraform_bin)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
        for pid in d.leftovers():
            os.kill(pid, signal.SIGKILL)


def fetch(url: str) -> str:
    """GET `url`; a `*.localhost` host is reached on 127.0.0.1 with its name in the Host header, as browsers and
    curl resolve it (Python's resolver here does not)."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(url)
    if parts.hostname and parts.hostname.endswith(".localhost"):
        request = urllib.request.Request(
            parts._replace(netloc=f"127.0.0.1:{parts.port}").geturl(), headers={"Host": parts.netloc}
        )
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.read().decode()


async def _said(demo: Demo, text: str):
    return text in demo.text()


async def _gone(demo: Demo):
    return demo.proc.poll() is not None and not demo.leftovers()


async def test_demo_serves_a_preview_and_ctrl_c_cleans_up(demo):
    d = demo()
    url = await d.preview_url()
    assert re.fullmatch(r"http://pr-\d+-hello-world-\d+\.localhost:\d+/", url)  # through the gateway
    page = fetch(url)
    # served by the sample repository's serve.py, from its checkout at the pull request's commit
    assert "<h1>Hello from PR #2 at ec26c3e57ca3a959ca5aad62de7213c562f8c821</h1>" in page
    assert "Served by <code>serve.py</code> of Codertocat/Hello-World" in page
    checkout = d.data_dir / "demo" / "state" / "sources" / "186853002" / "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert (checkout / "serve.py").stat().st_mode & 0o777 == 0o444
    api = re.search(r"API\s+(http://\S+)", d.text()).group(1)
    assert '"status": "active"' in fetch(api)

    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(60) == 0, d.text()
    assert "destroy succeeded" in d.text()
    await wait_for(lambda: _gone(d), timeout=10, what="no process left")
    with pytest.raises(OSError):
        fetch(url)


async def test_demo_double_ctrl_c_leaves_nothing_behind(demo):
    d = demo()
    await d.preview_url()
    d.proc.send_signal(signal.SIGINT)
    await wait_for(lambda: _said(d, "destroying the demo environments"), what="the first Ctrl-C handled")
    d.proc.send_signal(signal.SIGINT)
    d.proc.wait(60)
    await wait_for(lambda: _gone(d), timeout=15, what="previews and PostgreSQL to stop")


async def test_demo_killed_with_sigkill_leaves_nothing_behind(demo):
    d = demo()
    url = await d.preview_url()
    d.proc.kill()
    await wait_for(lambda: _gone(d), timeout=15, what="previews and PostgreSQL to stop after SIGKILL")
    with pytest.raises(OSError):
        fetch(url)
    # and the next demo starts cleanly on the same data dir
    again = demo()
    assert "Hello from PR #2 at ec26c3e57ca3a959ca5aad62de7213c562f8c821" in fetch(await again.preview_url())
