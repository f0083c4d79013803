"""The dashboard in a real browser against a whole tashooks (receiver + worker + simulated
API + Slack stand-in): sign in, the live stream, the chart, a dead letter retried from the
page, a dry run; a screenshot is kept (tests/ui/artifacts/dashboard.png, not committed)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from receiver.app import create_app
from receiver.settings import load_settings
from tests.handlers.conftest import SLACK_PATH, Stack, StackFactory
from tests.ui.conftest import ARTIFACTS, Browser

TOKEN = "ui-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = """
version: 1
defaults:
  retry: {attempts: 2, backoff: exponential, initial: 10ms, max: 20ms}
targets:
  ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
rules:
  - name: notify
    on: "vps.*"
    steps:
      - slack: {target: ops, text: "{{ event.data.id }} {{ event.event }}"}
  - name: note
    on: vps.created
    when: {data.name: {matches: "^web-"}}
    steps:
      - log: {message: "created {{ event.data.name }}"}
"""


async def admin_get(stack: Stack, path: str) -> Any:
    resp = await stack.http.get(stack.base + path, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def until(check: Any, what: str, max_wait: float = 15.0) -> Any:
    deadline = time.monotonic() + max_wait
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"waited {max_wait}s for {what}"
        await asyncio.sleep(0.05)


async def test_dashboard_end_to_end(
    make_stack: StackFactory, browser: Browser, tmp_path: Path
) -> None:
    stack = await make_stack(RULES, admin_token=TOKEN)
    # A dead letter: Slack fails until the cause is "fixed".
    stack.slack.fail(SLACK_PATH, status=500, count=None)
    failed_id = await stack.send("vps.deleted", id="vps_7")
    assert (await stack.wait_runs(failed_id))[0]["status"] == "failed"
    [dead] = await stack.deadletters()
    stack.slack.state.clear_failures()

    # Sign in: a wrong token is refused; the right one is kept in the tab, not the URL.
    await browser.get(stack.base + "/ui")
    token_box = await browser.visible("#token")
    await browser.call(token_box.send_keys, "wrong-token")
    await browser.call((await browser.visible("#login-submit")).click)
    await browser.until(
        lambda d: "refused" in d.find_element("id", "login-error").text, "the refusal"
    )
    token_box = await browser.visible("#token")
    await browser.call(token_box.clear)
    await browser.call(token_box.send_keys, TOKEN)
    await browser.call((await browser.visible("#login-submit")).click)
    await browser.visible("#dash")
    assert TOKEN not in await browser.call(lambda: browser.driver.current_url)
    assert await browser.js("return sessionStorage.getItem('tashooks.admin-token')") == TOKEN

    # The dead letter is listed; the live stream connects.
    row = f'#dl-body tr[data-id="{dead["id"]}"]'
    await browser.visible(row)
    await browser.until(lambda d: d.find_element("id", "live").text == "live", "the live stream")

    # A new delivery shows up live, with its rules' runs.
    new_id = await stack.send("vps.created", id="vps_9", name="web-9")
    await browser.visible(f'#stream li[data-kind="delivery"][data-id="{new_id}"]')
    await browser.until(
        lambda d: (
            len(d.find_elements("css selector", f'#stream li[data-kind="run"][data-id="{new_id}"]'))
            == 2
        ),
        "both runs of the new event",
    )
    await stack.slack.wait_for_messages(1)

    # The chart has the failed run (from /stats) and the deliveries.
    await browser.visible("#chart rect.s-failed")
    await browser.visible("#chart rect.s-accepted")
    await browser.visible("#chart rect.s-ok")

    ARTIFACTS.mkdir(exist_ok=True)
    await browser.screenshot(ARTIFACTS / "before-retry.png")

    # Retry from the page: the row goes, the run completes, the list is empty.
    await browser.call((await browser.visible(f"{row} button.retry")).click)
    await browser.gone(row)
    await browser.until(
        lambda d: "Retry queued" in d.find_element("id", "notice").text, "the notice"
    )
    runs = await stack.wait_runs(failed_id, 2)
    assert runs[-1]["status"] == "ok"
    assert (await admin_get(stack, "/deadletters"))["data"] == []

    async def event_ok() -> bool:
        return (await admin_get(stack, f"/events/{failed_id}"))["status"] == "ok"

    await until(event_ok, "the retried event to be ok")
    texts = [m.text for m in await stack.slack.wait_for_messages(2)]
    assert "vps_7 vps.deleted" in texts
    await browser.until(lambda d: d.find_element("id", "dl-count").text == "0", "count 0")

    # A dry run, served by this process's worker side; no environment value is shown.
    box = await browser.visible("#dry-event")
    await browser.call(box.clear)
    await browser.call(
        box.send_keys, '{"event": "vps.created", "data": {"id": "vps_1", "name": "web-1"}}'
    )
    await browser.call((await browser.visible("#dry-submit")).click)
    fired = await browser.visible("#dry-result .fired")
    assert await browser.call(lambda: fired.text) == "Fires: notify, note"
    notify = await browser.visible('#dry-result li[data-rule="notify"]')
    assert "slack ops" in await browser.call(lambda: notify.text)
    page = await browser.call(lambda: browser.driver.page_source)
    assert SLACK_PATH not in page and stack.slack.url_for(SLACK_PATH) not in page
    assert "SLACK_URL" in page  # named, not shown

    # The screenshot, then the console: no errors on the way.
    # The whole page in the picture: the window as tall as the page (within reason).
    chrome, height = await browser.js(
        "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight]"
    )
    await browser.call(browser.driver.set_window_size, 1400, min(chrome + height, 2400))
    await browser.js("window.scrollTo(0, 0)")
    shot = tmp_path / "dashboard.png"
    await browser.screenshot(shot)
    shutil.copyfile(shot, ARTIFACTS / "dashboard.png")
    errors = await browser.call(browser.console_errors)
    # The wrong token's 401 is the only failed request the console may show.
    assert [e for e in errors if "status of 401" not in e["message"]] == [], errors

    # Signing out forgets the token.
    await browser.call((await browser.visible("#signout")).click)
    await browser.visible("#token")
    assert await browser.js("return sessionStorage.getItem('tashooks.admin-token')") is None


async def test_a_receiver_alone_says_where_dry_runs_are(
    aiohttp_server: Any, redis_url: str, tmp_path: Path, browser: Browser
) -> None:
    settings = load_settings(
        redis_url=redis_url, webhook_secret="s", admin_token=TOKEN, data_dir=tmp_path
    )
    server = await aiohttp_server(create_app(settings))
    await browser.get(str(server.make_url("/ui")))
    await browser.call((await browser.visible("#token")).send_keys, TOKEN)
    await browser.call((await browser.visible("#login-submit")).click)
    note = await browser.visible("#dry-off")
    assert "tashooks serve" in await browser.call(lambda: note.text)
    assert not await browser.call((await browser.visible("#dry-submit")).is_enabled)
    await browser.visible("#dl-empty")
    await browser.until(lambda d: d.find_element("id", "live").text == "live", "the live stream")
