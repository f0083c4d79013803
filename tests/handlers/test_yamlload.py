"""The YAML layer: YAML 1.2 core schema, lines on every node, tags, anchors, ${ENV}."""

from __future__ import annotations

import math
from typing import Any

import pytest

from handlers.yamlload import Map, Scalar, Seq, parse, resolve_plain, substitute, to_python


def load(text: str, env: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    node, problems = parse(text, file="f.yaml", env=env or {})
    return node, [str(p) for p in problems]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", None),
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        # YAML 1.1 booleans are strings in 1.2
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("0", 0),
        ("-12", -12),
        ("+7", 7),
        ("0123", 123),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-.5", -0.5),
        (".inf", math.inf),
        ("-.INF", -math.inf),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("12:30", "12:30"),
        ("vps.*", "vps.*"),
    ],
)
def test_core_schema(text: str, value: Any) -> None:
    assert resolve_plain(text) == value
    assert type(resolve_plain(text)) is type(value)


def test_nan() -> None:
    assert math.isnan(resolve_plain(".nan"))


def test_lines_and_source_text() -> None:
    node, problems = load("a: 1\nb:\n  - 0123\n  - 'q'\nc: |\n  text\n")
    assert problems == [] and isinstance(node, Map)
    assert node.key_line("b") == 2 and node.key_line("zzz") == 1
    seq = node.get("b")
    assert isinstance(seq, Seq) and seq.line == 3
    first, second = seq.items
    assert isinstance(first, Scalar) and (first.value, first.text, first.line) == (123, "0123", 3)
    assert first.plain and isinstance(second, Scalar) and not second.plain
    block = node.get("c")
    assert isinstance(block, Scalar) and block.block and block.value == "text\n"
    assert node.get("nope") is None


def test_tags() -> None:
    node, problems = load(
        "a: !!str 0123\nb: !!int '5'\nc: !!float 1\nd: !!bool true\ne: ! 5\nf: !!null ~\n"
    )
    assert problems == []
    assert to_python(node) == {"a": "0123", "b": 5, "c": 1.0, "d": True, "e": "5", "f": None}
    _, problems = load("a: !!int x\nb: !custom 1\nc: !!set {a}\n")
    assert problems == [
        "f.yaml:1: 'x' is not a valid !!int",
        "f.yaml:2: unsupported YAML tag '!custom'",
        "f.yaml:3: unsupported YAML tag '!!set'",
    ]


def test_anchors_aliases_and_merge() -> None:
    node, problems = load(
        "base: &b {timeout: 5s, retry: {attempts: 2}}\n"
        "step:\n  <<: *b\n  timeout: 1s\n"
        "many:\n  <<: [*b, {extra: 1}]\n"
        "again: *b\n"
    )
    assert problems == []
    data = to_python(node)
    assert data["step"] == {"timeout": "1s", "retry": {"attempts": 2}}
    assert data["many"] == {"timeout": "5s", "retry": {"attempts": 2}, "extra": 1}
    assert data["again"] == data["base"]


def test_alias_and_merge_mistakes() -> None:
    _, problems = load("a: *nope\nb:\n  <<: 1\nc: &self [*self]\n")
    assert problems == [
        "f.yaml:1: unknown alias '*nope'",
        "f.yaml:3: '<<' merges a mapping or a list of mappings",
        "f.yaml:4: unknown alias '*self'",
    ]


def test_document_mistakes() -> None:
    _, problems = load("a: 1\n---\nb: 2\n")
    assert problems == ["f.yaml:2: only one YAML document is allowed in a rules file"]
    _, problems = load("? [a]\n: 1\nb: 2\nb: 3\n")
    assert problems == [
        "f.yaml:1: mapping keys must be plain strings, not a list or mapping",
        "f.yaml:4: duplicate key 'b' (first defined at line 3)",
    ]
    node, problems = load("")
    assert node is None and problems == []


def test_syntax_errors() -> None:
    _, problems = load("a: 'open\n")
    assert problems == [  # the end of the stream is on the file's last line, not after it
        "f.yaml:1: YAML syntax error: found unexpected end of stream "
        "(while scanning a quoted scalar started at line 1)"
    ]
    _, problems = load("a: 1\n b: 2\n")
    assert problems == [
        "f.yaml:2: YAML syntax error: mapping values are not allowed here; check the "
        "indentation, and quote a value that holds ': '"
    ]


def test_substitute() -> None:
    env = {"A": "1", "B": "{x: y}"}
    assert substitute("${A}-${B}", env) == ("1-{x: y}", [])
    assert substitute("$${A} $$ $A ${", env) == (
        "${A} $$ $A ${",
        ["invalid reference '${'; write ${NAME}, or $${ for a literal ${"],
    )
    assert substitute("${MISSING}", env) == (
        "${MISSING}",
        ["environment variable MISSING is not set"],
    )


def test_env_values_keep_their_scalar_kind() -> None:
    node, problems = load(
        "n: ${N}\nq: '${N}'\ns: ${S}\nlist: ${L}\n", env={"N": "5", "S": "yes", "L": "[1, 2]"}
    )
    assert problems == []
    # An unquoted ${N} is resolved like any plain scalar; quoted stays a string; never structure.
    assert to_python(node) == {"n": 5, "q": "5", "s": "yes", "list": "[1, 2]"}
    node, problems = load("u: ${UNSET}\n")
    assert problems == ["f.yaml:1: environment variable UNSET is not set"]
    assert isinstance(node, Map)
    unset = node.get("u")
    assert isinstance(unset, Scalar) and unset.broken


def test_an_alias_bomb_is_refused_with_its_line() -> None:
    """Nested aliases ("billion laughs") would expand a few lines into 9**10 values."""
    lines = ["version: 1", "x:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    node, problems = load("\n".join(lines) + "\n")
    assert node is None
    [problem] = problems
    assert problem.startswith("f.yaml:8: the aliases here expand the file to more than 100,000")


def test_aliases_within_the_limit_expand() -> None:
    node, problems = load("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n")
    assert problems == []
    assert to_python(node) == {"a": [1, 2, 3], "b": [[1, 2, 3]] * 3}
