"""The baseline for bench/webhook_ack.py: a bare aiohttp server whose `POST /webhooks` does nothing but return 202.

python -m bench.bare_server PORT
"""

import sys

from aiohttp import web


async def receive(_request: web.Request) -> web.Response:
    return web.Response(status=202)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks", receive)
    app.router.add_get("/healthz", healthz)
    # No access log: ghapp's is off too (aiohttp.access at WARNING).
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
