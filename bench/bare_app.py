"""The baseline: a bare aiohttp app whose handler only reads the body and answers 202.

Run by ``bench/ingest.py`` as ``python bench/bare_app.py PORT [BURN_US]`` (127.0.0.1 only).
With ``BURN_US``, the handler also spins that many µs of CPU per request: a yardstick for
what any per-request work costs the HTTP stack's rate.
"""

from __future__ import annotations

import sys
import time

from aiohttp import web
from aiohttp.typedefs import Handler


def make_handler(burn_s: float) -> Handler:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        if burn_s:
            end = time.perf_counter() + burn_s
            while time.perf_counter() < end:
                pass
        return web.Response(status=202)

    return accept


def main() -> None:
    burn_us = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    app = web.Application()
    app.router.add_post("/webhooks", make_handler(burn_us / 1e6))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
