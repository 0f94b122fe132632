"""A preview that shows what it was sent, for the gateway's end-to-end tests (tests/test_gateway_e2e.py): terraform/local
runs it as its `command` (`PORT` and `PREVIEW_*` set by the module). A browser (it accepts HTML) gets a page with a
heading naming the pull request and the request's headers as JSON in `<pre id="seen">`; any other client gets that
JSON itself. Standard library only: it runs as the run user, with the preview's small environment."""

from __future__ import annotations

import html
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    server_version = "preview-echo"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        repository, number = os.environ.get("PREVIEW_REPOSITORY", ""), os.environ.get("PREVIEW_PR_NUMBER", "")
        seen = {
            "preview": f"{repository}#{number}",
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
        }
        if "text/html" in self.headers.get("Accept", ""):
            title = html.escape(f"Echo from {repository} #{number}")
            body = f'<!doctype html><title>{title}</title><h1>{title}</h1><pre id="seen">{html.escape(json.dumps(seen))}</pre>'
            content, kind = body.encode(), "text/html; charset=utf-8"
        else:
            content, kind = json.dumps(seen).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo)
    server.daemon_threads = True
    server.serve_forever()
