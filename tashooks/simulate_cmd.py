"""``tashooks simulate``: the simulated tasmanian.cloud API in the foreground."""

from __future__ import annotations

import asyncio
import signal

from tashooks.simulator import SimulatorConfig, start_simulator


async def run_simulator_forever(host: str, port: int, api_key: str) -> None:
    """Serve until SIGINT/SIGTERM, printing where and how to use it."""
    sim = await start_simulator(SimulatorConfig(api_key=api_key), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"simulated tasmanian.cloud API at {sim.url} (Bearer {api_key}); Ctrl-C stops it",
        flush=True,
    )
    print(
        f"  point tashooks at it: TASHOOKS_API_URL={sim.url} TASHOOKS_API_KEY={api_key}", flush=True
    )
    try:
        await stop.wait()
    finally:
        await sim.close()
