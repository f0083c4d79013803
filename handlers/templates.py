"""Jinja2 templates of the rules file: sandboxed, strict, compiled once when the file loads.

Only strings written in the rules file are ever compiled. Event data reaches templates as
values in the render context and the rendered text is never rendered again, so an event
carrying ``{{ 7*7 }}`` stays those seven characters.

Defence in depth against templates that reach for Python internals:

- at load time, any attribute or item whose name starts with ``_`` (``__class__``,
  ``__globals__``...), ``mro``, and the ``attr`` filter with such a name are refused, as are
  ``include``/``import``/``extends`` (there is nothing to load);
- at run time, ``ImmutableSandboxedEnvironment`` refuses the same, plus anything that would
  modify a list or dict, and ``StrictUndefined`` makes every unknown name an error.

A step type may give a parameter a *transform*, applied to each ``{{ }}`` output (a Jinja
``finalize``) but never to the rule's own literal text:

- ``encode_segment`` (the ``api`` step's ``path``, the ``file`` step's ``path``): each
  output is percent-encoded as exactly one path segment: ``/`` becomes ``%2F``, and a value
  that is exactly ``.`` or ``..`` becomes ``%2E`` / ``%2E%2E``, so event data cannot walk
  the path;
- ``escape_slack`` (the ``slack`` step's ``text`` and ``blocks``): ``&``, ``<`` and ``>``
  become ``&amp;``, ``&lt;``, ``&gt;``, so event data cannot mention ``<!channel>`` or
  forge a ``<url|link>``.

Render failures raise ``TemplateError``: a ``StepError`` that is never retryable, since the
same template and event would fail the same way again.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.environment import TemplateExpression
from jinja2.exceptions import TemplateSyntaxError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from handlers.exceptions import StepError
from handlers.transforms import SegmentError, Transform
from handlers.transforms import encode_segment as encode_segment  # re-exported

# Names a template may use; the runner's context has exactly these.
CONTEXT_NAMES = frozenset({"event", "steps", "rule", "event_id"})
# Names Jinja offers by default, refused in rules templates (named in the message).
_JINJA_NAMES = frozenset({"self", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})
# Rendered ``if:`` text that counts as false.
FALSE_TEXTS = frozenset({"", "false", "0", "no", "off", "none", "null"})
# Attributes the sandbox refuses beyond ``_``-prefixed ones; refused at load time as well.
_UNSAFE_NAMES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "tb_frame",
    }
)


class TemplateError(StepError):
    """A template could not be rendered (undefined name, refused by the sandbox, ...)."""

    retryable = False


class TemplateSourceError(ValueError):
    """A template in the rules file is wrong. ``issues``: (line in the template, message).

    ``step_refs`` are the ``steps.<id>`` references found all the same (none after a syntax
    error), so the loader can check them too and report every mistake at once.
    """

    def __init__(
        self, issues: list[tuple[int, str]], step_refs: tuple[tuple[str, int], ...] = ()
    ) -> None:
        super().__init__("; ".join(message for _, message in issues))
        self.issues = issues
        self.step_refs = step_refs


@cache
def environment(finalize: Transform | None = None) -> ImmutableSandboxedEnvironment:
    """The shared sandbox (one per transform: ``finalize`` is applied at compile time).

    Jinja's globals (``range``, ``dict``, ``lipsum``, ``cycler``, ``joiner``, ``namespace``)
    are removed: templates see only the names of ``CONTEXT_NAMES``.
    """
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,  # a `content: |` block keeps its last newline
        finalize=finalize,
    )
    env.globals.clear()
    return env


def is_template(text: str) -> bool:
    """Whether ``text`` has Jinja syntax; other strings are used as they are."""
    return "{{" in text or "{%" in text or "{#" in text


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """A compiled template from the rules file."""

    source: str
    transform: Transform | None
    compiled: JinjaTemplate = field(repr=False)
    # ``steps.<id>`` references: (id, line in the template), for the loader to check.
    step_refs: tuple[tuple[str, int], ...] = ()

    @property
    def encoded(self) -> bool:
        """Whether each output is percent-encoded as a path segment."""
        return self.transform is encode_segment

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with the runner's context; raise TemplateError on any failure."""
        try:
            return self.compiled.render(dict(context))
        except SegmentError as exc:
            raise TemplateError(f"cannot render {self.source!r}: {exc}") from None
        except Exception as exc:  # sandbox, undefined, type errors in expressions...
            raise TemplateError(_failure(self.source, exc)) from None


@dataclass(frozen=True, slots=True, eq=False)
class Predicate:
    """A step's ``if:``: a bare expression (truthy value) or a template (truthy text)."""

    source: str
    expression: TemplateExpression | None = field(repr=False)
    template: Template | None = field(repr=False)
    step_refs: tuple[tuple[str, int], ...] = ()

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether the step should run; raise TemplateError when it cannot be evaluated."""
        if self.template is not None:
            return self.template.render(context).strip().lower() not in FALSE_TEXTS
        assert self.expression is not None
        try:
            return bool(self.expression(**context))
        except Exception as exc:
            raise TemplateError(_failure(self.source, exc)) from None


def compile_template(
    source: str, *, encoded: bool = False, transform: Transform | None = None
) -> Template:
    """Compile a rules-file string; raise TemplateSourceError listing every mistake.

    ``transform`` applies to each ``{{ }}`` output; ``encoded=True`` means ``encode_segment``.
    """
    if encoded:
        transform = encode_segment
    env = environment(transform)
    try:
        ast = env.parse(source)
        refs = _check(env, ast)
        compiled = env.from_string(ast)
    # The compiler finds some mistakes (an unknown filter) only after parsing.
    except TemplateSyntaxError as exc:
        raise TemplateSourceError([(exc.lineno, _syntax_message(exc))]) from None
    return Template(source, transform, compiled, refs)


def compile_predicate(source: str) -> Predicate:
    """Compile an ``if:`` value: ``{{ ... }}`` text, or a bare Jinja expression."""
    if is_template(source):
        template = compile_template(source)
        return Predicate(source, None, template, template.step_refs)
    env = environment()
    try:
        parser = Parser(env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                "unexpected text after the expression", parser.stream.current.lineno
            )
        ast = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
        ast.set_environment(env)
        refs = _check(env, ast)
        expression = env.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateSourceError([(exc.lineno, _syntax_message(exc))]) from None
    return Predicate(source, expression, None, refs)


def render(template: Template | str, context: Mapping[str, Any]) -> str:
    """Render one value: a Template, or a plain string (returned as it is)."""
    return template if isinstance(template, str) else template.render(context)


def render_params(
    compiled_params: Mapping[str, Any],
    context: Mapping[str, Any],
    transforms: Mapping[str, Transform] | Set[str] = frozenset(),
) -> dict[str, Any]:
    """Render every Template inside dicts and lists; other values are kept as they are.

    Templates anywhere under a top-level key of ``transforms`` are rendered with that key's
    transform, even if they were compiled without it (their source is compiled again, once).
    A set of keys means ``encode_segment`` for each.
    """
    if not isinstance(transforms, Mapping):
        transforms = dict.fromkeys(transforms, encode_segment)
    return {
        key: _render_value(value, context, transforms.get(key))
        for key, value in compiled_params.items()
    }


@lru_cache(maxsize=1024)
def _with_transform(source: str, transform: Transform) -> Template:
    return compile_template(source, transform=transform)


def _render_value(value: Any, context: Mapping[str, Any], transform: Transform | None) -> Any:
    if isinstance(value, Template):
        if transform is not None and value.transform is not transform:
            value = _with_transform(value.source, transform)
        return value.render(context)
    if isinstance(value, Mapping):
        return {k: _render_value(v, context, transform) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(v, context, transform) for v in value]
    return value


def _check(env: ImmutableSandboxedEnvironment, ast: nodes.Template) -> tuple[tuple[str, int], ...]:
    """Load-time checks; return the ``steps.<id>`` references (raise TemplateSourceError)."""
    issues: list[tuple[int, str]] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = _accessed_name(node)
        if name is not None and (name.startswith("_") or name in _UNSAFE_NAMES):
            issues.append(
                (
                    node.lineno,
                    f"template uses '{name}'; Python internals "
                    "(names starting with '_', mro, ...) are not allowed",
                )
            )
    for stmt in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        issues.append(
            (stmt.lineno, "include, import and extends are not available in rules templates")
        )
    for used in ast.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(used, nodes.Filter | nodes.Test)
        kind, known = (
            ("filter", env.filters) if isinstance(used, nodes.Filter) else ("test", env.tests)
        )
        if used.name not in known:
            close = difflib.get_close_matches(used.name, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            issues.append((used.lineno, f"unknown {kind} '{used.name}' in template{hint}"))
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError:  # an unknown filter or test (above): a rougher look
        assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx != "load"}
        loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
        undeclared = loaded - assigned - {"loop", "caller", "varargs", "kwargs"}
    # Jinja binds ``self`` (the template's blocks) without counting it as undeclared.
    undeclared |= {n.name for n in ast.find_all(nodes.Name) if n.name == "self"}
    for name in sorted(undeclared - CONTEXT_NAMES):
        line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), 1)
        hint = (
            " (only event, steps, rule and event_id are available)" if name in _JINJA_NAMES else ""
        )
        issues.append((line, f"undefined name '{name}' in template{hint}"))
    refs: list[tuple[str, int]] = []
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(access, nodes.Getattr | nodes.Getitem)
        target = access.node
        if isinstance(target, nodes.Name) and target.name == "steps":
            step_id = _accessed_name(access)
            if step_id is not None:  # steps[some_variable] cannot be checked
                refs.append((step_id, access.lineno))
    if issues:
        raise TemplateSourceError(sorted(issues), tuple(refs))
    return tuple(refs)


def _accessed_name(node: nodes.Node) -> str | None:
    """The constant attribute/key name ``node`` reads, if any (``x.a``, ``x['a']``, attr)."""
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None
    if isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        arg = node.args[0]
        return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None
    return None


def _syntax_message(exc: TemplateSyntaxError) -> str:
    return f"template syntax error: {exc.message}"


def _failure(source: str, exc: Exception) -> str:
    kind = type(exc).__name__
    return f"template {source!r} failed: {kind}: {exc}"
