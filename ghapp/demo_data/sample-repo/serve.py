"""The sample repository's web app: `ghapp demo` runs it from the pull request's own code, at its commit."""

import html
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def page() -> bytes:
    pr, sha = os.environ.get("PREVIEW_PR_NUMBER", "?"), os.environ.get("PREVIEW_GIT_SHA", "?")
    repository = os.environ.get("PREVIEW_REPOSITORY", "")
    greeting = f"Hello from PR #{pr} at {sha}"
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(greeting)}</title></head>
<body>
<h1>{html.escape(greeting)}</h1>
<p>Served by <code>serve.py</code> of {html.escape(repository)}, from the pull request's own code.</p>
</body>
</html>
""".encode()


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = page()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
