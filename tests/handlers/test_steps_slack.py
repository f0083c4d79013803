"""``slack`` steps: event data is escaped (no mentions, no forged links), limits kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers.rules import check_rules, load_rules
from handlers.steps.slack import MAX_TEXT, SlackParams, cut
from handlers.transforms import escape_slack
from tests.handlers.conftest import SLACK_PATH, StackFactory

EVIL = "<!channel> & <http://evil|click>"
ESCAPED = "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;"


def load_step(tmp_path: Path, step: str) -> Any:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\ntargets:\n  ops: {type: slack, url: 'https://hooks.slack.com/x'}\n"
        "rules:\n  - name: r\n    on: vps.created\n    steps:\n"
        f"      - slack: {step}\n"
    )
    [rule] = load_rules(path, env={}).rules
    return rule.steps[0]


def render(spec: Any, **data: Any) -> SlackParams:
    context = {"event": {"data": data}, "steps": {}, "rule": "r", "event_id": "e"}
    params = spec.render(context)
    assert isinstance(params, SlackParams)
    return params


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        (EVIL, ESCAPED),
        ("<@U123> <#C1|general> <!here>", "&lt;@U123&gt; &lt;#C1|general&gt; &lt;!here&gt;"),
        ("&amp; already", "&amp;amp; already"),
        ("plain *bold* _it_", "plain *bold* _it_"),
        (42, "42"),
    ],
)
def test_escape_slack(value: Any, escaped: str) -> None:
    assert escape_slack(value) == escaped


def test_template_outputs_are_escaped_but_the_rules_own_text_is_not(tmp_path: Path) -> None:
    text = "'<!here> {{ event.data.name }} is <{{ event.data.url }}|up>'"
    spec = load_step(tmp_path, f"{{target: ops, text: {text}}}")
    params = render(spec, name=EVIL, url="https://x.example/?a=1&b=<2>")
    assert params.text == f"<!here> {ESCAPED} is <https://x.example/?a=1&amp;b=&lt;2&gt;|up>"


def test_template_outputs_in_blocks_are_escaped(tmp_path: Path) -> None:
    spec = load_step(
        tmp_path,
        "{target: ops, blocks: [{type: section, text: {type: mrkdwn, "
        "text: '*{{ event.data.name }}*'}}]}",
    )
    params = render(spec, name=EVIL)
    assert params.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{ESCAPED}*"}}
    ]


def test_expressions_built_in_a_template_are_escaped_too(tmp_path: Path) -> None:
    # Everything a {{ }} outputs is data; Slack markup belongs in the rule's literal text.
    spec = load_step(tmp_path, "{target: ops, text: \"{{ '<!channel>' }}\"}")
    assert render(spec).text == "&lt;!channel&gt;"


def test_cut_keeps_slacks_limit_without_splitting_an_escape() -> None:
    assert cut("a" * (MAX_TEXT + 10)) == "a" * MAX_TEXT
    assert cut("short") == "short"
    assert cut("abcd&amp;xyz", limit=6) == "abcd"
    assert cut("abcd&amp;xyz", limit=9) == "abcd&amp;"
    assert cut("abc&lt;", limit=5) == "abc"
    assert cut("a&b" * 3, limit=5) == "a&ba&"


def test_more_than_50_blocks_are_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    blocks = ", ".join(["{type: divider}"] * 51)
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        f"      - slack: {{url: 'https://hooks.slack.com/x', blocks: [{blocks}]}}\n"
    )
    _, problems = check_rules(path, env={})
    assert [str(p).removeprefix(f"{path}:") for p in problems] == [
        "6: slack parameter 'blocks': at most 50 blocks fit in a Slack message, not 51"
    ]


def test_allow_private_belongs_to_the_target(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\ntargets:\n  ops: {type: slack, url: 'https://hooks.slack.com/x'}\n"
        "rules:\n  - name: r\n    on: vps.created\n    steps:\n"
        "      - slack: {target: ops, text: hi, allow_private: true}\n"
    )
    _, problems = check_rules(path, env={})
    assert [str(p).removeprefix(f"{path}:") for p in problems] == [
        "8: slack: allow_private belongs to the target: set it under targets: "
        "ops: {..., allow_private: true}"
    ]


async def test_event_data_cannot_ping_the_channel_end_to_end(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        targets:
          ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
        rules:
          - name: notify
            on: vps.status_changed
            steps:
              - slack:
                  target: ops
                  text: ":warning: {{ event.data.name }} is {{ event.data.status }}"
                  blocks:
                    - {type: section, text: {type: mrkdwn, text: "*{{ event.data.name }}*"}}
    """)
    await stack.send("vps.status_changed", id="vps_1", name=EVIL, status="<b>down</b>")
    [message] = await stack.slack.wait_for_messages(1, max_wait=10)
    assert message.path == SLACK_PATH
    assert message.text == f":warning: {ESCAPED} is &lt;b&gt;down&lt;/b&gt;"
    assert message.payload["blocks"][0]["text"]["text"] == f"*{ESCAPED}*"


async def test_long_text_is_cut_to_slacks_limit_end_to_end(make_stack: StackFactory) -> None:
    stack = await make_stack("""
        version: 1
        targets:
          ops: {type: slack, url: "${SLACK_URL}", allow_private: true}
        rules:
          - name: notify
            on: vps.created
            steps:
              - slack: {target: ops, text: "{{ event.data.name }}"}
    """)
    await stack.send("vps.created", id="vps_1", name="<" * 20_000)
    [message] = await stack.slack.wait_for_messages(1, max_wait=10)
    assert message.text == "&lt;" * (MAX_TEXT // 4)
