"""The Slack incoming-webhook stand-in and the generic sink."""

from __future__ import annotations

import httpx
import pytest

from tashooks.slackstub import RunningStub

HOOK = "/services/T000/B000/XXXX"


async def test_ok_for_a_text_message(slack: RunningStub) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(slack.url_for(HOOK), json={"text": "hello"})
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    assert [(m.path, m.text) for m in slack.messages] == [(HOOK, "hello")]


async def test_blocks_without_text_are_fine(slack: RunningStub) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    async with httpx.AsyncClient() as client:
        response = await client.post(slack.url_for(HOOK), json={"blocks": blocks})
    assert response.status_code == 200
    assert slack.messages[0].payload["blocks"] == blocks


async def test_form_encoded_payload_is_accepted(slack: RunningStub) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(slack.url_for(HOOK), data={"payload": '{"text": "form"}'})
    assert response.status_code == 200
    assert slack.messages[0].text == "form"


@pytest.mark.parametrize(
    ("content", "status", "body"),
    [
        (b"{not json", 400, "invalid_payload"),
        (b"[1, 2]", 400, "invalid_payload"),
        (b'{"username": "bot"}', 400, "invalid_payload"),
        (b'{"text": ""}', 400, "no_text"),
        (b'{"blocks": "nope"}', 400, "invalid_blocks"),
    ],
)
async def test_bad_payloads_answer_like_slack(
    slack: RunningStub, content: bytes, status: int, body: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            slack.url_for(HOOK), content=content, headers={"Content-Type": "application/json"}
        )
    assert (response.status_code, response.text) == (status, body)
    assert slack.messages == []
    assert slack.requests[0].status == status


async def test_malformed_service_path_is_no_service(slack: RunningStub) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(slack.url_for("/services/T000"), json={"text": "x"})
    assert (response.status_code, response.text) == (404, "no_service")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("no_service", 404),
        ("channel_not_found", 404),
        ("channel_is_archived", 410),
        ("action_prohibited", 403),
        ("rollup_error", 500),
    ],
)
async def test_configured_failures(slack: RunningStub, error: str, status: int) -> None:
    slack.fail(HOOK, error)
    async with httpx.AsyncClient() as client:
        failed = await client.post(slack.url_for(HOOK), json={"text": "x"})
        then = await client.post(slack.url_for(HOOK), json={"text": "y"})
    assert (failed.status_code, failed.text) == (status, error)
    assert then.status_code == 200  # count defaults to one
    assert [m.text for m in slack.messages] == ["y"]


async def test_rate_limited_with_retry_after_for_k_requests(slack: RunningStub) -> None:
    other = "/services/T1/B1/Y1"
    slack.fail(HOOK, "rate_limited", retry_after=3, count=2)
    async with httpx.AsyncClient() as client:
        answers = [await client.post(slack.url_for(HOOK), json={"text": "x"}) for _ in range(3)]
        unaffected = await client.post(slack.url_for(other), json={"text": "x"})
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].text == "rate_limited"
    assert unaffected.status_code == 200


async def test_failures_via_the_control_endpoint(slack: RunningStub) -> None:
    async with httpx.AsyncClient(base_url=slack.root_url) as client:
        armed = await client.post(
            "/_stub/fail", json={"path": "/services/*", "status": 500, "count": None}
        )
        assert armed.status_code == 200
        assert (await client.post(HOOK, json={"text": "a"})).status_code == 500
        assert (await client.post(HOOK, json={"text": "b"})).status_code == 500
        await client.delete("/_stub/fail")
        assert (await client.post(HOOK, json={"text": "c"})).status_code == 200
        bad = await client.post("/_stub/fail", json={"path": HOOK, "error": "made_up"})
        assert bad.status_code == 400
        listed = (await client.get("/_stub/messages")).json()["data"]
    assert listed == [{"path": HOOK, "payload": {"text": "c"}}]


async def test_sink_records_anything(slack: RunningStub) -> None:
    async with httpx.AsyncClient() as client:
        posted = await client.post(
            slack.url_for("/sink/audit"), json={"event": "vps.created"}, headers={"X-Trace": "1"}
        )
        put = await client.put(slack.url_for("/sink/audit"), content=b"raw bytes")
        await client.post(slack.url_for("/sink/other"), json={})
        logged = (await client.get(slack.url_for("/_stub/requests"))).json()["data"]
    assert posted.status_code == put.status_code == 200
    assert posted.json() == {"ok": True}
    audit = slack.state.sink_requests("audit")
    assert [(r.method, r.json) for r in audit] == [
        ("POST", {"event": "vps.created"}),
        ("PUT", None),
    ]
    assert audit[0].headers["X-Trace"] == "1"
    assert audit[1].body == b"raw bytes"
    assert len(slack.state.sink_requests()) == 3
    assert [r["body"] for r in logged[:2]] == ['{"event":"vps.created"}', "raw bytes"]


async def test_wait_for_messages(slack: RunningStub) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(slack.url_for(HOOK), json={"text": "one"})
    messages = await slack.wait_for_messages(1, max_wait=1)
    assert messages[0].text == "one"
    with pytest.raises(TimeoutError):
        await slack.wait_for_messages(2, max_wait=0.05)
