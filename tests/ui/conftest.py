"""Browser tests of the dashboard: Debian's headless Chromium driven through its
chromedriver with Selenium, against a whole tashooks (``make_stack``).

Chromium is required, not optional: CI installs it (apt packages ``chromium`` and
``chromium-driver``); without it these tests fail and say so.

Selenium's calls block, and the stack under test serves from this test's event loop, so
every browser call runs in a thread (``Browser``), and every wait has a bound.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.handlers.conftest import make_stack  # noqa: F401  (the fixture, for these tests)

CHROMIUM = os.environ.get("TASHOOKS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASHOOKS_CHROMEDRIVER", "/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps calling out to a closed network.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
ARTIFACTS = Path(__file__).with_name("artifacts")


class Browser:
    """A Selenium WebDriver whose blocking calls run in a thread."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def until(self, probe: Callable[[Any], Any], what: str, max_wait: float = 10.0) -> Any:
        """Poll ``probe(driver)`` until it returns something true; fail after ``max_wait``."""
        deadline = time.monotonic() + max_wait
        last: Any = None
        while True:
            try:
                last = await self.call(probe, self.driver)
            except Exception as exc:  # e.g. an element replaced while being read
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                shot = ARTIFACTS / "failure.png"
                ARTIFACTS.mkdir(exist_ok=True)
                await self.call(self.driver.save_screenshot, str(shot))
                raise AssertionError(f"waited {max_wait}s for {what}; last: {last!r} ({shot})")
            await asyncio.sleep(0.1)

    async def css(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(await self.call(self.driver.find_elements, By.CSS_SELECTOR, selector))

    async def visible(self, selector: str, max_wait: float = 10.0) -> Any:
        """The first element matching ``selector`` once it is displayed."""
        from selenium.webdriver.common.by import By

        def probe(driver: Any) -> Any:
            found = [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]
            return found[0] if found else None

        return await self.until(probe, f"{selector} to be shown", max_wait)

    async def gone(self, selector: str, max_wait: float = 10.0) -> None:
        from selenium.webdriver.common.by import By

        await self.until(
            lambda d: not d.find_elements(By.CSS_SELECTOR, selector),
            f"{selector} to go away",
            max_wait,
        )

    async def screenshot(self, path: Path) -> None:
        assert await self.call(self.driver.save_screenshot, str(path)), path

    def console_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return (
                f"{path} is missing: the dashboard's browser tests need Debian's {package} "
                "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
            )
    return None


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Headless Chromium with a fresh profile; fails (never skips) when it is not installed."""
    problem = _missing()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -c constraints.txt -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = await asyncio.wait_for(
        asyncio.to_thread(webdriver.Chrome, options=options, service=service), 60
    )
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)
