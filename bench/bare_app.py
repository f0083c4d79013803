"""The baseline: a bare aiohttp app whose handler only reads the body and answers 202.

Run by ``bench/ingest.py`` as ``python bench/bare_app.py PORT`` (127.0.0.1 only).
"""

from __future__ import annotations

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
