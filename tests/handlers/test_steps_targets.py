"""Slack and HTTP targets reach only public addresses unless ``allow_private: true`` (SSRF)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from handlers import netguard
from handlers.client import send
from handlers.exceptions import StepError, TransportError
from handlers.netguard import TargetClient, check_host, refusal
from tashooks.slackstub import RunningStub, start_slack_stub
from tests.handlers.conftest import SLACK_PATH, StackFactory

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("100.64.0.1", "not public"),
    ("192.0.2.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("2002:7f00:1::1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


def resolver(answers: dict[str, list[str]]) -> netguard.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    return resolve


async def test_a_host_is_refused_when_any_of_its_addresses_is_private() -> None:
    answers = {"mixed.test": ["8.8.8.8", "10.0.0.1"], "public.test": ["8.8.8.8"]}
    with pytest.raises(StepError, match=r"mixed\.test \(10\.0\.0\.1 is private\)") as caught:
        await check_host("mixed.test", 443, resolver=resolver(answers))
    assert caught.value.retryable is False
    assert await check_host("public.test", 443, resolver=resolver(answers)) == ["8.8.8.8"]


@pytest.fixture
async def sink() -> AsyncIterator[RunningStub]:
    stub = await start_slack_stub("127.0.0.1", 0)
    yield stub
    await stub.close()


async def test_plain_client_requests_are_checked_first(sink: RunningStub) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(StepError, match=r"127\.0\.0\.1 is loopback") as caught:
            await send(http, "POST", sink.url_for("/sink/a"), json_body={})
        assert caught.value.retryable is False
        assert (await send(http, "POST", sink.url_for("/sink/a"), allow_private=True)).status
    assert len(sink.requests) == 1


async def test_unresolvable_host_is_a_retryable_transport_error() -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(TransportError, match=r"cannot resolve nowhere\.invalid") as caught:
            await send(http, "POST", "http://nowhere.invalid/x", json_body={})
    assert caught.value.retryable is True


async def test_target_client_refuses_at_connect_time(sink: RunningStub) -> None:
    async with TargetClient() as http:
        with pytest.raises(StepError, match=r"127\.0\.0\.1 is loopback"):
            await send(http, "POST", sink.url_for("/sink/a"), json_body={"n": 1})
        await send(http, "POST", sink.url_for("/sink/a"), json_body={"n": 2}, allow_private=True)
    assert [r.json for r in sink.requests] == [{"n": 2}]


async def test_target_client_connects_to_the_address_it_checked(
    sink: RunningStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host exists only in this resolver: a request that arrives went to the address the
    # check saw, not to one looked up again afterwards (no DNS rebinding window).
    monkeypatch.setattr(netguard, "refusal", lambda address: None)
    answers = {"sink.test": ["127.0.0.1"]}
    port = httpx.URL(sink.url_for("/")).port
    async with TargetClient(resolver=resolver(answers)) as http:
        response = await send(http, "POST", f"http://sink.test:{port}/sink/a", json_body={})
    assert response.status == 200
    [request] = sink.requests
    assert request.headers["Host"] == f"sink.test:{port}"


async def test_target_client_uses_only_the_resolvers_answer(sink: RunningStub) -> None:
    # The resolver says "private" for a name the system would not even know.
    answers = {"sink.test": ["10.0.0.7"]}
    async with TargetClient(resolver=resolver(answers)) as http:
        with pytest.raises(StepError, match=r"sink\.test \(10\.0\.0\.7 is private\)"):
            await send(http, "GET", "http://sink.test/x")


async def test_private_targets_are_dead_lettered_without_retries(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack("""
        version: 1
        defaults:
          retry: {attempts: 3, initial: 10ms, max: 10ms}
        targets:
          ops: {type: slack, url: "${SLACK_URL}"}
          sink: {type: http, url: "${SINK_URL}"}
        rules:
          - name: tell
            on: vps.created
            steps:
              - slack: {target: ops, text: hi}
          - name: forward
            on: vps.created
            steps:
              - http: {target: sink}
    """)
    event_id = await stack.send("vps.created", id="vps_1")
    runs = await stack.wait_runs(event_id, 2)
    assert {r["status"] for r in runs} == {"failed"}
    dead = await stack.deadletters()
    assert sorted(d["rule"] for d in dead) == ["forward", "tell"]
    for letter in dead:
        assert letter["attempts"] == 1
        assert "127.0.0.1 is loopback" in letter["error"]
        assert "allow_private: true" in letter["error"]
    assert stack.slack.requests == []


async def test_slack_url_steps_may_allow_private(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        rules:
          - name: tell
            on: vps.created
            steps:
              - slack: {url: "${SLACK_URL}", text: "refused"}
                continue_on_error: true
              - slack: {url: "${SLACK_URL}", text: "allowed", allow_private: true}
    """)
    event_id = await stack.send("vps.created", id="vps_1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "ok"
    assert [m.text for m in stack.slack.messages] == ["allowed"]
    assert stack.slack.messages[0].path == SLACK_PATH


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(("served_as", "ok"), [("sink.test", True), ("other.test", False)])
async def test_tls_is_verified_against_the_host_name_not_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_as: str, ok: bool
) -> None:
    cert, key = certificate(tmp_path, served_as)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen: list[str | None] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setattr(netguard, "refusal", lambda address: None)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        async with TargetClient(
            resolver=resolver({"sink.test": ["127.0.0.1"]}), verify=client_ctx
        ) as http:
            url = f"https://sink.test:{port}/hook"
            if ok:
                assert (await send(http, "POST", url, json_body={})).status == 200
                assert seen == [f"sink.test:{port}"]
            else:
                with pytest.raises(TransportError, match="ConnectError"):
                    await send(http, "POST", url, json_body={})
                assert seen == []
    finally:
        await runner.cleanup()
