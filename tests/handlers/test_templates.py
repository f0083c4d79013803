"""Templates: sandbox, strict names, percent-encoding of path segments, no re-rendering."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from handlers.exceptions import StepError
from handlers.templates import (
    Template,
    TemplateError,
    TemplateSourceError,
    compile_predicate,
    compile_template,
    encode_segment,
    environment,
    render,
    render_params,
)


def context(**data: Any) -> dict[str, Any]:
    return {
        "event": {"event": "vps.created", "timestamp": "2024-01-15T10:30:00Z", "data": data},
        "steps": {"fetch": {"status": 200, "body": {"ip": "10.0.0.5"}}},
        "rule": "my-rule",
        "event_id": "evt_01",
    }


def test_render_with_every_context_name() -> None:
    template = compile_template(
        "{{ rule }} {{ event_id }} {{ event.data.name }} {{ steps.fetch.body.ip }}"
    )
    assert template.render(context(name="web")) == "my-rule evt_01 web 10.0.0.5"


def test_plain_strings_pass_through_render() -> None:
    assert render("no template here", context()) == "no template here"
    assert render(compile_template("{{ event.data.n + 1 }}"), context(n=1)) == "2"


def test_trailing_newline_is_kept() -> None:
    assert compile_template("{{ rule }}\n").render(context()) == "my-rule\n"


def test_event_data_is_never_rendered_as_a_template() -> None:
    ctx = context(name="{{ 7*7 }}", other="{% for x in range(9) %}x{% endfor %}")
    assert compile_template("{{ event.data.name }}").render(ctx) == "{{ 7*7 }}"
    assert compile_template("{{ event.data.other }}").render(ctx) == (
        "{% for x in range(9) %}x{% endfor %}"
    )
    # Nor is the rendered output rendered again, in params.
    rendered = render_params({"text": compile_template("{{ event.data.name }}")}, ctx)
    assert rendered == {"text": "{{ 7*7 }}"}


# (value placed in an api path, what the path segment becomes)
ENCODING = [
    ("vps_abc123", "vps_abc123"),
    ("../../webhooks", "..%2F..%2Fwebhooks"),
    ("..", "%2E%2E"),
    (".", "%2E"),
    ("...", "..."),
    ("a b", "a%20b"),
    ("a/b?c=d#e", "a%2Fb%3Fc%3Dd%23e"),
    ("100%", "100%25"),
    ("ünïcødé", "%C3%BCn%C3%AFc%C3%B8d%C3%A9"),
    ("🚀", "%F0%9F%9A%80"),
    (42, "42"),
]


@pytest.mark.parametrize(("value", "segment"), ENCODING)
def test_encoded_path_segment(value: Any, segment: str) -> None:
    template = compile_template("/vps/{{ event.data.id }}/actions", encoded=True)
    assert template.render(context(id=value)) == f"/vps/{segment}/actions"
    assert encode_segment(value) == segment


def test_encoding_applies_to_every_output_but_not_literal_text() -> None:
    template = compile_template(
        "/a/b/{{ event.data.x }}{% if event.data.y %}/{{ event.data.y }}{% endif %}",
        encoded=True,
    )
    assert template.render(context(x="1/2", y="..")) == "/a/b/1%2F2/%2E%2E"


def test_empty_path_segment_is_refused() -> None:
    template = compile_template("/vps/{{ event.data.id }}/actions", encoded=True)
    with pytest.raises(TemplateError, match="a value placed in the path is empty"):
        template.render(context(id=""))


def test_render_params_recurses_and_encodes_only_encoded_fields() -> None:
    params = {
        "method": "POST",
        "path": compile_template("/vps/{{ event.data.id }}", encoded=True),
        "json": {
            "name": compile_template("{{ event.data.id }}"),
            "n": 3,
            "tags": [compile_template("{{ rule }}"), "plain", None],
        },
    }
    assert render_params(params, context(id="a/b"), frozenset({"path"})) == {
        "method": "POST",
        "path": "/vps/a%2Fb",
        "json": {"name": "a/b", "n": 3, "tags": ["my-rule", "plain", None]},
    }


def test_render_params_encodes_a_template_compiled_without_encoding() -> None:
    params = {"path": compile_template("/vps/{{ event.data.id }}")}
    assert render_params(params, context(id=".."), frozenset({"path"})) == {"path": "/vps/%2E%2E"}


@pytest.mark.parametrize(
    "source",
    [
        "{{ event.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ event['__class__'] }}",
        "{{ event | attr('__class__') }}",
        "{{ event.data.items.__globals__ }}",
        "{{ event._private }}",
        "{{ rule.mro() }}",
        "{% for c in ''.__class__.__bases__ %}{{ c }}{% endfor %}",
    ],
)
def test_python_internals_are_refused_at_load(source: str) -> None:
    with pytest.raises(TemplateSourceError, match="Python internals"):
        compile_template(source)


def test_the_sandbox_blocks_internals_at_run_time_too() -> None:
    # Bypassing the load-time check: the sandbox itself must refuse.
    with pytest.raises(SecurityError):
        environment().from_string("{{ ''.__class__ }}").render()
    with pytest.raises(SecurityError):
        environment().from_string("{{ x.mro() }}").render(x=int)
    # A key taken from event data cannot be checked at load time: the sandbox stops it.
    template = compile_template("{{ event[event.data.key] }}")
    with pytest.raises(TemplateError, match="SecurityError"):
        template.render(context(key="__class__"))


def test_the_sandbox_is_immutable() -> None:
    template = compile_template("{{ event.data.tags.append('x') }}")
    ctx = context(tags=["a"])
    with pytest.raises(TemplateError, match="SecurityError"):
        template.render(ctx)
    assert ctx["event"]["data"]["tags"] == ["a"]


def test_include_and_import_are_refused() -> None:
    with pytest.raises(TemplateSourceError, match="include, import and extends"):
        compile_template("{% include 'x.html' %}")


def test_undefined_names_are_refused_at_load() -> None:
    with pytest.raises(TemplateSourceError) as info:
        compile_template("{{ data.name }}\n{{ foo }}{{ event }}")
    assert info.value.issues == [
        (1, "undefined name 'data' in template"),
        (2, "undefined name 'foo' in template"),
    ]


def test_local_names_filters_and_tests_are_allowed() -> None:
    template = compile_template(
        "{% set n = event.data.n %}{% for i in event.data.tags %}{{ loop.index }}{{ i }}"
        "{% endfor %}{{ n + 1 }}{{ event.data | tojson }}{{ n is number }}"
    )
    assert template.render(context(n=3, tags=["a", "b"])) == (
        '1a2b4{"n": 3, "tags": ["a", "b"]}True'
    )


@pytest.mark.parametrize(
    "name", ["range(3)", "dict(a=1)", "lipsum()", "cycler(1, 2)", "joiner()", "namespace()", "self"]
)
def test_jinja_globals_are_refused_at_load(name: str) -> None:
    with pytest.raises(TemplateSourceError) as info:
        compile_template("{{ " + name + " }}")
    word = name.partition("(")[0]
    assert info.value.issues == [
        (
            1,
            f"undefined name '{word}' in template (only event, steps, rule and event_id are "
            "available)",
        )
    ]


def test_jinja_globals_are_gone_at_run_time_too() -> None:
    # Bypassing the load-time check: the environment itself has none of them.
    assert environment().globals == {}
    with pytest.raises(UndefinedError):
        environment().from_string("{{ range(3) | list }}").render()


def test_syntax_errors_carry_the_template_line() -> None:
    with pytest.raises(TemplateSourceError) as info:
        compile_template("line one\n{{ event.data.name }")
    assert info.value.issues == [(2, "template syntax error: unexpected '}'")]


def test_unknown_filters_and_tests_are_all_reported_with_other_mistakes() -> None:
    with pytest.raises(TemplateSourceError) as info:
        compile_template("{{ rule | uper }}\n{% if rule is nosuch %}{{ nope }}{% endif %}")
    assert info.value.issues == [
        (1, "unknown filter 'uper' in template (did you mean 'upper'?)"),
        (2, "undefined name 'nope' in template"),
        (2, "unknown test 'nosuch' in template"),
    ]


def test_step_refs_are_kept_when_a_template_has_a_mistake() -> None:
    with pytest.raises(TemplateSourceError) as info:
        compile_template("{{ nope }}{{ steps.later.body }}")
    assert info.value.step_refs == (("later", 1),)


def test_undefined_at_run_time_is_a_non_retryable_step_error() -> None:
    template = compile_template("{{ event.data.missing }}")
    with pytest.raises(TemplateError) as info:
        template.render(context())
    assert isinstance(info.value, StepError)
    assert info.value.retryable is False
    assert "has no attribute 'missing'" in str(info.value)


def test_step_refs() -> None:
    template = compile_template("{{ steps.a.status }}\n{{ steps['b'] }}{{ steps[rule] }}")
    assert template.step_refs == (("a", 1), ("b", 2))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("steps.fetch.status == 200", True),
        ("steps.fetch.status != 200", False),
        ("event.data.n > 2 and rule == 'my-rule'", True),
        ("event.data.tags", False),  # an empty list is falsy
        ("true", True),
        ("false", False),
        ("{{ steps.fetch.status == 200 }}", True),
        ("{{ event.data.n > 5 }}", False),
        ("{{ event.data.tags | length }}", False),  # "0"
        ("{% if event.data.n %}yes{% endif %}", True),
        ("{{ '' }}", False),
    ],
)
def test_predicates(source: str, expected: bool) -> None:
    ctx = context(n=3, tags=[])
    assert compile_predicate(source).evaluate(ctx) is expected


def test_predicate_mistakes() -> None:
    with pytest.raises(TemplateSourceError, match="undefined name 'status'"):
        compile_predicate("status == 200")
    with pytest.raises(TemplateSourceError, match="unexpected text after the expression"):
        compile_predicate("rule == 'a' rule")
    with pytest.raises(TemplateSourceError, match="Python internals"):
        compile_predicate("event.__class__")
    assert compile_predicate("steps.fetch.status == 200").step_refs == (("fetch", 1),)
    with pytest.raises(TemplateError):
        compile_predicate("event.data.missing").evaluate(context())


def test_template_is_frozen() -> None:
    template = compile_template("{{ rule }}")
    assert isinstance(template, Template)
    with pytest.raises(AttributeError):
        template.source = "{{ event }}"  # type: ignore[misc]
