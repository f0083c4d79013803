"""The ``tashooks`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver.settings import Settings, SettingsError, load_settings, redact_redis_url
from tashooks.cli_admin import add_admin_commands
from tashooks.cli_rules import UsageError, add_check_command, add_commands, parse_data
from tashooks.cli_status import add_status_command

EXIT_USAGE = 2


def _setup_logging(settings: Settings) -> None:
    from tashooks.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format, settings.secret_values())


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:  # a bad setting is a usage mistake, as in events/status
        print(f"tashooks: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cmd_daemon(args: argparse.Namespace, *, receiver: bool, worker: bool) -> int:
    from redis.exceptions import RedisError

    from handlers.exceptions import RulesError
    from tashooks.daemon import run_daemon
    from tashooks.serving import ListenError

    settings = _settings(
        host=args.host,
        port=getattr(args, "port", None),
        rules=getattr(args, "rules", None),
        shutdown_grace=getattr(args, "grace", None),
    )
    _setup_logging(settings)
    if receiver:
        try:
            settings.require_webhook_secret()
        except SettingsError as exc:
            print(f"tashooks: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        asyncio.run(run_daemon(settings, receiver=receiver, worker=worker))
    except RulesError as exc:
        print(
            f"{exc}\ntashooks: the rules file does not validate; fix it "
            f"(tashooks check {settings.rules})",
            file=sys.stderr,
        )
        return 1
    except ListenError as exc:
        host_name = "--host" if args.host is not None else "TASHOOKS_HOST"
        port_name = "--port" if getattr(args, "port", None) is not None else "TASHOOKS_PORT"
        print(f"tashooks: {exc.advice(host_name, port_name)}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, RedisError) as exc:
        print(
            f"tashooks: Redis at {redact_redis_url(settings.redis_url)} is unreachable ({exc}); "
            "exiting so that a supervisor restarts this process. "
            "Check that Redis runs and TASHOOKS_REDIS_URL.",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import httpx

    from receiver.signatures import HEADER, sign

    try:
        data = parse_data(args.data)
    except UsageError as exc:
        print(f"tashooks send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings()
    secret = args.secret
    if secret is None:
        secrets = settings.webhook_secrets
        if not secrets:
            print(
                "tashooks send: no secret: pass --secret or set TASHOOKS_WEBHOOK_SECRET",
                file=sys.stderr,
            )
            return EXIT_USAGE
        secret = secrets[0].decode()
    url = args.url or f"http://{settings.host}:{settings.port}/webhooks"
    doc = {
        "event": args.type,
        # Milliseconds: two sends of the same data in one second are two events.
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data,
    }
    body = json.dumps(doc).encode()
    try:
        response = httpx.post(
            url,
            content=body,
            timeout=10.0,
            headers={HEADER: sign(body, secret), "Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        print(
            f"tashooks send: cannot reach {url}: {exc}; is the receiver running (tashooks serve)?",
            file=sys.stderr,
        )
        return 1
    print(f"{response.status_code} {response.text}")
    return 0 if response.status_code < 300 else 1


def cmd_register(args: argparse.Namespace) -> int:
    from handlers.schema import did_you_mean
    from receiver.events import KNOWN_EVENT_TYPES
    from tashooks.register import RegisterError, new_secret, register_webhook

    settings = _settings()
    if settings.api_key is None or not settings.api_key.get_secret_value().strip():
        print(
            "tashooks register: set TASHOOKS_API_KEY (an API key of the account); it is "
            + ("empty" if settings.api_key is not None else "not set"),
            file=sys.stderr,
        )
        return EXIT_USAGE
    events = [e.strip() for item in args.events for e in item.split(",") if e.strip()] or None
    for unknown in [e for e in events or () if e not in KNOWN_EVENT_TYPES]:
        print(
            f"tashooks register: warning: {unknown!r} is not one of the platform's event types "
            f"({', '.join(KNOWN_EVENT_TYPES)}){did_you_mean(unknown, KNOWN_EVENT_TYPES)}; "
            "registering it as given",
            file=sys.stderr,
        )
    secret = new_secret()
    try:
        answer = asyncio.run(
            register_webhook(
                settings.api_url,
                settings.api_key.get_secret_value(),
                args.url,
                events=events,
                secret=secret,
            )
        )
    except RegisterError as exc:
        print(f"tashooks register: {exc}", file=sys.stderr)
        return 1
    print(f"registered webhook {answer.get('id', '?')} for {args.url}")
    print(f"events: {', '.join(answer.get('events') or events or ['all'])}")
    print("secret (shown once; give it to tashooks as TASHOOKS_WEBHOOK_SECRET):")
    print(answer.get("secret", secret))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from tashooks.logs import setup_logging
    from tashooks.serving import ListenError
    from tashooks.simulate_cmd import run_simulator_forever

    setup_logging("INFO")
    try:
        asyncio.run(run_simulator_forever(args.host, args.port, args.api_key))
    except ListenError as exc:
        print(f"tashooks simulate: {exc.advice('--host', '--port')}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tashooks.demo import run_demo

    terminated = False

    async def main() -> int:
        # SIGTERM, like Ctrl-C, cancels the demo: its cleanup (keys, redis-server) runs.
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        return await run_demo(
            rules=Path(args.rules) if args.rules else None,
            timeout=args.timeout,
            verbose=args.verbose,
        )

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "tashooks demo: interrupted; what it started is stopped and its keys are deleted",
            file=sys.stderr,
        )
        return 143 if terminated else 130


def _port(value: str) -> int:
    """A port option's value (argparse names the option in its error)."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0 to 65535)")
    return port


def _duration(value: str) -> float:
    """A duration option's value, e.g. ``30s`` (argparse names the option in its error)."""
    from receiver.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashooks",
        description="Webhook receiver and event automation for tasmanian.cloud. "
        "Settings come from TASHOOKS_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_text in (
        ("serve", "run the receiver and a worker in one process"),
        ("receiver", "run the HTTP receiver only"),
        ("worker", "run a worker only"),
    ):
        # Each command offers only the options it uses: the receiver runs no rules or jobs,
        # and a worker serves nothing on PORT (its /metrics is on HOST:METRICS_PORT).
        p = sub.add_parser(name, help=help_text)
        if name == "worker":
            p.add_argument(
                "--host",
                help="address of its /metrics (TASHOOKS_HOST; port TASHOOKS_METRICS_PORT)",
            )
        else:
            p.add_argument("--host", help="bind address (TASHOOKS_HOST)")
            p.add_argument("--port", type=_port, help="bind port (TASHOOKS_PORT)")
        if name != "receiver":
            p.add_argument("--rules", help="rules file (TASHOOKS_RULES)")
            p.add_argument(
                "--grace",
                type=_duration,
                metavar="DURATION",
                help="time running jobs get to finish on SIGTERM, e.g. 30s or 2m "
                "(TASHOOKS_SHUTDOWN_GRACE, 30s)",
            )
        p.set_defaults(
            func=lambda a, n=name: cmd_daemon(
                a, receiver=n in ("serve", "receiver"), worker=n in ("serve", "worker")
            )
        )

    add_check_command(sub)
    add_commands(sub)

    p = sub.add_parser("send", help="sign and post a test delivery")
    p.add_argument("type", help="event type, e.g. vps.created")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a field of data (repeatable)",
    )
    p.add_argument("--url", help="receiver URL (default http://HOST:PORT/webhooks)")
    p.add_argument("--secret", help="signing secret (default TASHOOKS_WEBHOOK_SECRET)")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "register",
        help="create the webhook on tasmanian.cloud with a new secret (printed once)",
    )
    p.add_argument("--url", required=True, help="the public URL of this receiver's /webhooks")
    p.add_argument(
        "--events",
        action="append",
        default=[],
        metavar="TYPE[,TYPE…]",
        help="event types to receive (default: all)",
    )
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("simulate", help="run a local tasmanian.cloud API that sends webhooks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8090)
    p.add_argument("--api-key", default="sim-key", help="Bearer token it accepts")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="run everything locally and show the rules at work")
    p.add_argument("--rules", help="rules file (default ./rules.yaml)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the rules' effects (default 30)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the daemon's log")
    p.set_defaults(func=cmd_demo)

    add_admin_commands(sub)
    add_status_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tashooks`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
