"""Loading rules.yaml: parse, validate, build the RuleSet.

Validation runs in a fixed order (version, defaults, unknown top-level keys, targets, each
rule, tests, then cross-references: targets named by steps and ``steps.<id>`` in templates)
and collects every problem, each at the line of the node it is about: a mistake in one part
never hides one in another, so one ``tashooks check`` shows all mistakes at once, sorted
by line. The same code backs the daemon (``load_rules``) and the CLI (``check_rules``).

The models live in ``handlers.ruleset`` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

from handlers import conditions
from handlers.conditions import Condition
from handlers.exceptions import Problem, RulesError
from handlers.ruleset import KNOWN_EVENT_TYPES, RetryPolicy, Rule, RuleSet, StepSpec, Throttle
from handlers.ruletests import read_tests
from handlers.schema import did_you_mean, kind_of
from handlers.steps.base import Target
from handlers.stepschema import StepReader
from handlers.templates import Template
from handlers.yamlload import Map, Node, PlaceholderEnv, Scalar, Seq, parse

__all__ = [
    "KNOWN_EVENT_TYPES",
    "RetryPolicy",
    "Rule",
    "RuleSet",
    "StepSpec",
    "Throttle",
    "check_rules",
    "load_rules",
]

TOP_KEYS = ("version", "defaults", "targets", "rules", "tests")
DEFAULTS_KEYS = ("timeout", "retry")
TARGET_KEYS = ("type", "url", "headers", "allow_private")
RULE_KEYS = ("name", "on", "when", "throttle", "concurrency", "ordered", "steps")
THROTTLE_KEYS = ("key", "limit", "per", "mode")
DEFAULT_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_NAME_RULE = "may only use letters, digits, '_', '.' and '-'"


def load_rules(path: str | Path, env: Mapping[str, str] | None = None) -> RuleSet:
    """Load and validate a rules file; raise RulesError listing every error."""
    ruleset, problems = check_rules(path, env)
    if ruleset is None:
        raise RulesError([p for p in problems if not p.warning])
    return ruleset


def check_rules(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[RuleSet | None, list[Problem]]:
    """Validate a rules file: the RuleSet (None if any error) and all problems, warnings too.

    ``env`` replaces ``os.environ`` for ``${NAME}`` substitution (a ``PlaceholderEnv`` for
    dry runs). Problems are sorted by line.
    """
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, [
            Problem(
                file,
                0,
                f"cannot read the rules file: {reason}; check the path (--rules or "
                "TASHOOKS_RULES) and that this user may read it",
            )
        ]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [Problem(file, line, "the rules file is not valid UTF-8")]
    source = os.environ if env is None else env
    used = source if isinstance(source, PlaceholderEnv) else _Used(source)
    root, problems = parse(text, file=file, env=used)
    loader = _Loader(file, problems)
    ruleset = loader.load(root, Path(path), hashlib.sha256(data).hexdigest())
    if ruleset is not None and isinstance(used, _Used):
        ruleset = replace(ruleset, env_values=tuple(sorted(used.taken)))
    return ruleset, sorted(loader.problems, key=lambda problem: problem.line)


class _Used(Mapping[str, str]):
    """``env``, noting the values the file takes from it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.taken: set[str] = set()

    def __getitem__(self, name: str) -> str:
        value = self.env[name]
        self.taken.add(value)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.env

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


class _Loader(StepReader):
    """One pass over a parsed rules file, section by section."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        super().__init__(file, problems)
        self.target_types: dict[str, str | None] = {}
        self.target_lines: dict[str, int] = {}
        self.rule_names: dict[str, int] = {}

    def load(self, root: Node | None, path: Path, digest: str) -> RuleSet | None:
        if root is None or (isinstance(root, Scalar) and root.value is None):  # "" or "---"
            if not self.problems:
                self.error(1, "the rules file is empty; it needs at least version: 1")
            return None
        if not isinstance(root, Map):
            self.error(
                root.line, "the rules file must be a mapping with version, targets and rules"
            )
            return None
        version = self.version(root)
        timeout, retry = self.defaults(root.get("defaults"))
        self.unknown_keys(root, TOP_KEYS, "")
        targets = self.targets(root.get("targets"))
        rules = self.rules(root, timeout, retry)
        tests = read_tests(self, root.get("tests"), self.rule_names)
        self.cross_references()
        if any(not p.warning for p in self.problems) or version is None:
            return None
        warnings = tuple(sorted((p for p in self.problems if p.warning), key=lambda p: p.line))
        return RuleSet(path, version, digest, targets, rules, warnings, tests)

    def version(self, root: Map) -> int | None:
        node = root.get("version")
        if node is None:
            self.error(root.line, "missing required key 'version'; write version: 1")
            return None
        if isinstance(node, Scalar) and node.text == "1" and not isinstance(node.value, float):
            return 1
        self.error(node.line, f"unsupported version {_shown(node)}; this tashooks reads version: 1")
        return None

    def defaults(self, node: Node | None) -> tuple[float, RetryPolicy]:
        timeout, retry = DEFAULT_TIMEOUT, RetryPolicy()
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return timeout, retry
        section = self.mapping(node, "defaults")
        if section is None:
            return timeout, retry
        self.unknown_keys(section, DEFAULTS_KEYS, "defaults")
        if (value := section.get("timeout")) is not None:
            timeout = self.duration(value, "defaults.timeout") or timeout
        if (value := section.get("retry")) is not None:
            retry = self.retry(value, retry, "defaults.retry") or retry
        return timeout, retry

    def targets(self, node: Node | None) -> dict[str, Target]:
        targets: dict[str, Target] = {}
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return targets
        section = self.mapping(node, "targets")
        for name, (key, value) in (section.entries if section else {}).items():
            self.target_types[name] = None
            self.target_lines[name] = key.line
            if not _NAME.match(name):
                self.error(key.line, f"target name '{name}' {_NAME_RULE}")
            target = self.target(name, value)
            if target is not None:
                targets[name] = target
        return targets

    def target(self, name: str, node: Node) -> Target | None:
        where = f"target '{name}'"
        spec = self.mapping(node, where)
        if spec is None:
            return None
        self.unknown_keys(spec, TARGET_KEYS, where)
        type_node, url_node = self.required(spec, "type", where), self.required(spec, "url", where)
        kind = self.text(type_node, f"{where}: type") if type_node else None
        if type_node is not None and kind is not None and kind not in ("slack", "http"):
            self.error(
                type_node.line, f"{where}: type must be slack or http, not {kind_of(type_node)}"
            )
            kind = None
        # Known even when the rest of the target is wrong: steps using it are checked too.
        self.target_types[name] = kind
        url = self.text(url_node, f"{where}: url") if url_node else None
        # A dry run's placeholder (<NAME> for an unset variable) is no URL, and need not be.
        placeholder = isinstance(url_node, Scalar) and url_node.placeholder
        if url_node is not None and url is not None and not placeholder and not _is_http_url(url):
            # The URL is not shown: it often comes from ${...} and holds a secret.
            self.error(
                url_node.line, f"{where}: url must be an http:// or https:// URL with a host"
            )
            url = None
        headers: dict[str, str] = {}
        if (headers_node := spec.get("headers")) is not None:
            if kind == "slack":
                self.error(spec.key_line("headers"), f"{where}: headers are only for http targets")
            elif (section := self.mapping(headers_node, f"{where}: headers")) is not None:
                for header, (_, value) in section.entries.items():
                    if (text := self.text(value, f"{where}: header '{header}'")) is not None:
                        headers[header] = text
        allow_private = False
        if (flag := spec.get("allow_private")) is not None:
            allow_private = bool(self.boolean(flag, f"{where}: allow_private"))
        if kind is None or url is None:
            return None
        return Target(name, kind, url, headers, allow_private)

    def rules(self, root: Map, timeout: float, retry: RetryPolicy) -> list[Rule]:
        node = root.get("rules")
        empty = isinstance(node, Seq) and not node.items
        if node is None or empty or (isinstance(node, Scalar) and node.value is None):
            self.warn(
                root.key_line("rules"), "no rules: events are stored and audited, but nothing runs"
            )
            return []
        if not isinstance(node, Seq):
            self.error(
                node.line,
                f"rules must be a list of rules (each starting with "
                f"'- name:'), not {kind_of(node)}",
            )
            return []
        rules: list[Rule] = []
        names = self.rule_names
        for item in node.items:
            rule = self.rule(item, names, timeout, retry)
            if rule is not None:
                rules.append(rule)
        return rules

    def rule(
        self, node: Node, names: dict[str, int], timeout: float, retry: RetryPolicy
    ) -> Rule | None:
        spec = self.mapping(node, "each rule")
        if spec is None:
            return None
        self.unknown_keys(spec, RULE_KEYS, "rule")
        name: str | None = None
        if (name_node := self.required(spec, "name", "rule")) is not None:
            name = self.text(name_node, "rule name")
            if name is not None and not _NAME.match(name):
                self.error(name_node.line, f"rule name '{name}' {_NAME_RULE}")
            elif name is not None and name in names:
                self.error(
                    name_node.line,
                    f"duplicate rule name '{name}' (first defined at line {names[name]})",
                )
            elif name is not None:
                names[name] = name_node.line
        label = name or f"at line {spec.line}"
        on = self.on(self.required(spec, "on", "rule"))
        when: Condition | None = None
        if (value := spec.get("when")) is not None:
            when = conditions.build(value, file=self.file, problems=self.problems)
        ordered = True
        if (value := spec.get("ordered")) is not None:
            ordered = self.boolean(value, "ordered") is not False
        concurrency: int | None = None
        if (value := spec.get("concurrency")) is not None:
            concurrency = self.integer(value, "concurrency")
        ids: dict[str, int] = {}
        throttle = self.throttle(spec.get("throttle"), label, ids)
        steps = self.steps(self.required(spec, "steps", "rule"), label, ids, timeout, retry)
        if name is None or on is None or steps is None:
            return None
        return Rule(name, on, steps, spec.line, when, throttle, ordered, concurrency)

    def on(self, node: Node | None) -> tuple[str, ...] | None:
        if node is None:
            return None
        items = node.items if isinstance(node, Seq) else [node]
        if not items:
            self.error(node.line, "on needs at least one event type")
            return None
        patterns = [(self.text(item, "on"), item.line) for item in items]
        for i, (pattern, line) in enumerate(patterns):
            if pattern is not None and not pattern.strip():
                self.error(line, "on: an empty event type matches nothing; write e.g. vps.created")
                patterns[i] = (None, line)
            elif pattern is not None and not any(
                fnmatchcase(t, pattern) for t in KNOWN_EVENT_TYPES
            ):
                self.warn(
                    line,
                    f"'{pattern}' matches none of the known event types: "
                    + ", ".join(KNOWN_EVENT_TYPES)
                    + did_you_mean(pattern, KNOWN_EVENT_TYPES),
                )
        if any(pattern is None for pattern, _ in patterns):
            return None
        return tuple(str(pattern) for pattern, _ in patterns)

    def throttle(self, node: Node | None, rule: str, ids: dict[str, int]) -> Throttle | None:
        if node is None or (spec := self.mapping(node, "throttle")) is None:
            return None
        self.unknown_keys(spec, THROTTLE_KEYS, "throttle")
        limit_node = self.required(spec, "limit", "throttle")
        per_node = self.required(spec, "per", "throttle")
        limit = self.integer(limit_node, "throttle.limit") if limit_node else None
        per = self.duration(per_node, "throttle.per") if per_node else None
        key: Template | str | None = ""
        if (key_node := spec.get("key")) is not None:
            key = self.template(key_node, self.text(key_node, "throttle.key"), rule, -1, ids)
        mode: str | None = "drop"
        if (mode_node := spec.get("mode")) is not None:
            mode = self.text(mode_node, "throttle.mode")
            if mode is not None and mode not in ("drop", "delay"):
                self.error(
                    mode_node.line, f"throttle.mode must be drop or delay, not {kind_of(mode_node)}"
                )
                mode = None
        if limit is None or per is None or key is None or mode is None:
            return None
        return Throttle(limit, per, key, spec.line, mode)

    def cross_references(self) -> None:
        """Targets named by steps, then ``steps.<id>`` in templates; unused targets warn."""
        used: set[str] = set()
        for ref in self.target_refs:
            used.add(ref.name)
            if ref.name not in self.target_types:
                self.error(
                    ref.line,
                    f"unknown target '{ref.name}'; define it under targets:"
                    + did_you_mean(ref.name, self.target_types),
                )
                continue
            kind = self.target_types[ref.name]
            if kind is not None and kind != ref.step_type:
                self.error(
                    ref.line,
                    f"target '{ref.name}' has type {kind}; a {ref.step_type} step needs a "
                    f"target of type {ref.step_type}",
                )
        for sref in self.step_refs:
            where = f"steps.{sref.step_id}"
            if sref.index < 0:
                self.error(
                    sref.line,
                    f"{where} cannot be used in throttle.key: it is rendered before any step runs",
                )
            elif sref.step_id not in sref.ids:
                self.error(
                    sref.line,
                    f"{where}: no step in rule '{sref.rule}' has id '{sref.step_id}'"
                    + did_you_mean(sref.step_id, sref.ids),
                )
            elif sref.ids[sref.step_id] >= sref.index:
                self.error(
                    sref.line,
                    f"{where}: step '{sref.step_id}' does not run before this "
                    "step; only earlier steps' results can be used",
                )
        for name, line in self.target_lines.items():
            if name not in used:
                self.warn(line, f"target '{name}' is not used by any rule")


# Marks a parameter whose template has a mistake (already reported).


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _shown(node: Node) -> str:
    return node.text if isinstance(node, Scalar) else kind_of(node)
