"""``tashooks check`` (validate a rules file, ``--test`` runs its tests) and ``tashooks
test-rules`` (a dry run: which rules an event fires, why the others do not, and what each
step would do). Nothing is sent, written or queued; Redis is not needed.

Unset ``${NAME}``s: ``test-rules`` reads them as ``<NAME>`` and says so on stderr (a dry
run should not need the secrets; ``--strict-env`` refuses them as the daemon does);
``check`` refuses them unless given ``--env-placeholder``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the handlers are imported when a command runs, not for every command
    from handlers.dryrun import DryRun, RulePlan, StepPlan
    from handlers.rules import RuleSet
    from handlers.yamlload import PlaceholderEnv

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXAMPLE_EVENT = '{"event": "vps.created", "data": {"id": "vps_1", "name": "web-1"}}'


class UsageError(Exception):
    """A mistake in the command line or its input files: exit 2 with the message."""


def parse_data(pairs: list[str]) -> dict[str, Any]:
    """``--data NAME=VALUE`` options (``send``, ``test-rules``) as event data; raise
    ``UsageError`` for one without ``=`` or a name."""
    data: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--data takes NAME=VALUE, e.g. --data name=web-1; got {pair!r}")
        data[key] = value
    return data


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``test-rules``."""
    p = sub.add_parser(
        "test-rules",
        help="dry run: which rules an event fires, and what each step would do",
        description="Run the rules on one event without doing anything: which rules fire, "
        "why the others do not, and each step as it would run. Exit 0 when a rule fires, "
        "1 when none does, 2 on a usage or file error.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--event", metavar="FILE", help="the event as JSON (a delivery body); - reads stdin"
    )
    source.add_argument("--type", help="build the event: its type, e.g. vps.created")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --type: a field of data, a string (repeatable)",
    )
    p.add_argument("--rules", help="rules file (default TASHOOKS_RULES or ./rules.yaml)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--strict-env",
        action="store_true",
        help="refuse unset ${NAME}s as the daemon does (default: read them as <NAME>)",
    )
    p.set_defaults(func=cmd_test_rules)


def add_check_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``check`` (replacing the one of ``tashooks.cli``)."""
    p = sub.add_parser("check", help="validate a rules file; exit 1 on any error")
    p.add_argument("rules", nargs="?", help="rules file (default TASHOOKS_RULES or ./rules.yaml)")
    p.add_argument(
        "--test",
        action="store_true",
        help="also run the file's tests: (dry runs; exit 1 on a failure)",
    )
    p.add_argument(
        "--env-placeholder",
        action="store_true",
        help="read unset ${NAME}s as <NAME> instead of refusing them (e.g. CI without secrets)",
    )
    p.set_defaults(func=cmd_check)


def rules_path(given: str | None) -> Path:
    """The rules file: as given, else TASHOOKS_RULES, else ./rules.yaml."""
    return Path(given or os.environ.get("TASHOOKS_RULES") or "rules.yaml")


def cmd_check(args: argparse.Namespace) -> int:
    """``tashooks check [RULES] [--test] [--env-placeholder]``."""
    from handlers.rules import check_rules
    from handlers.ruletests import run_tests
    from handlers.yamlload import PlaceholderEnv

    path = rules_path(args.rules)
    env = PlaceholderEnv(os.environ) if getattr(args, "env_placeholder", False) else None
    ruleset, problems = check_rules(path, env)
    for problem in problems:
        print(problem, file=sys.stderr)
    errors = sum(not p.warning for p in problems)
    if ruleset is None or errors:
        print(f"{path}: {_count(errors, 'error')}; the rules were not loaded", file=sys.stderr)
        return EXIT_FAILED
    _note_unset(env, sys.stderr)
    print(
        f"{path}: OK, {_count(len(ruleset.rules), 'rule')}, "
        f"{_count(len(ruleset.targets), 'target')}, "
        f"version {ruleset.digest[:12]}"
    )
    if not getattr(args, "test", False):
        return EXIT_OK
    if not ruleset.tests:
        print(f"{path}: no tests to run; add a tests: section (see README, Rules)")
        return EXIT_OK
    report = run_tests(ruleset)
    for failure in report.failures:
        print(failure, file=sys.stderr)
    if report.failed:
        print(f"{path}: {report.failed} of {_count(report.total, 'test')} failed", file=sys.stderr)
        return EXIT_FAILED
    print(f"{path}: {_count(report.total, 'test')} passed")
    return EXIT_OK


def cmd_test_rules(args: argparse.Namespace) -> int:
    """``tashooks test-rules --event FILE|- | --type T [--data k=v ...]``."""
    from handlers.dryrun import dry_run
    from handlers.rules import check_rules
    from handlers.yamlload import PlaceholderEnv

    try:
        event = _event_from(args)
    except UsageError as exc:
        print(f"tashooks test-rules: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = rules_path(args.rules)
    env = None if args.strict_env else PlaceholderEnv(os.environ)
    ruleset, problems = check_rules(path, env)
    errors = [p for p in problems if not p.warning]
    if ruleset is None or errors:
        for problem in errors:
            print(problem, file=sys.stderr)
        print(
            f"tashooks test-rules: {path} does not validate; fix it first (tashooks check {path})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _note_unset(env, sys.stderr)
    result = dry_run(ruleset, event)
    if args.json:
        unset = env.unset if env is not None else []
        doc = {"rules_file": str(path), "unset_env": unset, **result.to_json()}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print_report(result, ruleset, sys.stdout)
    return EXIT_OK if result.fired else EXIT_FAILED


def _event_from(args: argparse.Namespace) -> dict[str, Any]:
    """The event document from --event, or built from --type/--data; raise UsageError."""
    from handlers.ruleset import timestamp_of
    from receiver.events import EventInvalid, parse_event

    if args.event is None:
        doc: Any = {"event": args.type, "data": parse_data(args.data)}
    else:
        if args.data:
            raise UsageError("--data goes with --type; with --event, put the data in the file")
        name = "stdin" if args.event == "-" else args.event
        try:
            raw = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"{name} is not valid JSON ({exc}); write the event as a JSON object, "
                f"e.g. {EXAMPLE_EVENT}"
            ) from None
        if not isinstance(doc, dict):
            raise UsageError(f"{name} must hold a JSON object, e.g. {EXAMPLE_EVENT}")
    doc.setdefault("timestamp", timestamp_of(datetime.now(UTC)))
    doc.setdefault("data", {})
    try:
        return parse_event(json.dumps(doc).encode()).raw
    except EventInvalid as exc:
        where = (
            "the event" if args.event is None else ("stdin" if args.event == "-" else args.event)
        )
        raise UsageError(f"{where}: {exc.message}") from None


def print_report(result: DryRun, ruleset: RuleSet, out: TextIO) -> None:
    """The dry run for people: the event, which rules fire, why the others do not, steps."""
    event = result.event
    data = json.dumps(event.get("data"), ensure_ascii=False)
    print(f"Event {event['event']} at {event['timestamp']}, data {data}", file=out)
    fired = result.fired
    names = ": " + ", ".join(plan.rule for plan in fired) if fired else ""
    print(
        f"{ruleset.path}: {len(fired)} of {_count(len(result.rules), 'rule')} would fire{names}",
        file=out,
    )
    for plan in result.rules:
        print(file=out)
        _print_rule(plan, out)
    print(
        "\nNot evaluated in a dry run: throttle limits, stale events (ordered), concurrency. "
        "Nothing was sent or written.",
        file=out,
    )


def _print_rule(plan: RulePlan, out: TextIO) -> None:
    if not plan.fires:
        print(f"{plan.rule} (line {plan.line}): does not fire: {plan.reason}", file=out)
        return
    print(f"{plan.rule} (line {plan.line}): FIRES", file=out)
    for note in plan.notes:
        print(f"    {note}", file=out)
    for step in plan.steps:
        print(f"    {_step_line(step)}", file=out)


def _step_line(step: StepPlan) -> str:
    head = f"{step.label}, line {step.line}"
    if step.status == "skipped":
        return f"{head}: skipped ({step.note})"
    if step.status == "error":
        return f"{head}: WOULD FAIL: {step.error}"
    line = f"{head}: {step.description}"
    return f"{line}\n        ({step.note})" if step.note else line


def _note_unset(env: PlaceholderEnv | None, out: TextIO) -> None:
    if env is not None and env.unset:
        names = ", ".join(env.unset)
        print(f"note: not set, read as <NAME> for this check: {names}", file=out)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
