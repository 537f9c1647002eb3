"""``python -m reference.stub``: parse the command line and environment, run the stub."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from reference.stub.server import StubConfig, serve

_PROG = "payments-stub"


class UsageError(Exception):
    """A bad argument or environment variable; the message is one line for stderr."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise ``UsageError``, so that ``main`` prints one line and returns 2."""
        raise UsageError(message)


def _parser() -> _Parser:
    """Build the command line parser; every knob falls back on an environment variable."""
    parser = _Parser(
        prog=_PROG,
        description="Reference payments provider with programmable faults (failfast grader).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", help="provider port [PORT], 0 = ephemeral")
    parser.add_argument("--admin-port", help="admin API port [ADMIN_PORT], 0 = ephemeral")
    parser.add_argument("--latency-ms", help="hold every request this long [LATENCY_MS]")
    parser.add_argument("--fail-rate", help="fraction of attempts answered 503 [FAIL_RATE]")
    parser.add_argument("--seed", help="seed of every random draw [SEED]")
    parser.add_argument("--owner-pid", help="exit once this process has exited")
    return parser


def _setting(given: str | None, env: Mapping[str, str], var: str, default: str) -> tuple[str, str]:
    """Pick a setting's raw value (flag, else environment, else default) and its name."""
    if given is not None:
        return given, f"--{var.lower().replace('_', '-')}"
    if env.get(var, "").strip():
        return env[var], var
    return default, var


def _int(raw: str, name: str, low: int, high: int | None = None) -> int:
    """Parse an integer setting within bounds."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{name} must be {bounds}, got {value}")
    return value


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> StubConfig:
    """Build the stub's config from arguments and environment; raise ``UsageError``."""
    args = _parser().parse_args(list(argv))
    port = _int(*_setting(args.port, env, "PORT", "0"), 0, 65535)
    admin_port = _int(*_setting(args.admin_port, env, "ADMIN_PORT", "0"), 0, 65535)
    latency_ms = _int(*_setting(args.latency_ms, env, "LATENCY_MS", "0"), 0)
    seed = _int(*_setting(args.seed, env, "SEED", "0"), 0)
    raw_rate, rate_name = _setting(args.fail_rate, env, "FAIL_RATE", "0")
    try:
        fail_rate = float(raw_rate.strip())
    except ValueError:
        raise UsageError(f"{rate_name} must be a number from 0 to 1, got {raw_rate!r}") from None
    # `not 0 <= x <= 1` also refuses NaN.
    if not 0.0 <= fail_rate <= 1.0:
        raise UsageError(f"{rate_name} must be a number from 0 to 1, got {raw_rate!r}")
    owner_pid = None if args.owner_pid is None else _int(args.owner_pid, "--owner-pid", 1)
    return StubConfig(
        host=args.host,
        port=port,
        admin_port=admin_port,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
        owner_pid=owner_pid,
    )


def _url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _announcer(config: StubConfig) -> Any:
    """Build the ready callback: a banner on stderr, then the one JSON line on stdout."""

    def announce(event: dict[str, Any]) -> None:
        """Tell humans (stderr) and the grader (stdout) that the stub is up."""
        host = event["host"]
        sys.stderr.write(
            f"{_PROG}: provider     {_url(host, event['port'])}  (POST /charge)\n"
            f"{_PROG}: admin        {_url(host, event['admin_port'])}  "
            "(/faults /journal /ledger /reset /info)\n"
            f"{_PROG}: connect-hang {_url(host, event['connect_hang_port'])}  "
            "(connects hang)\n"
            f"{_PROG}: LATENCY_MS={config.latency_ms} FAIL_RATE={config.fail_rate} "
            f"SEED={config.seed} owner-pid={config.owner_pid}\n"
        )
        sys.stderr.flush()
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    return announce


async def _run(config: StubConfig) -> None:
    """Serve until SIGTERM, SIGINT or the owner's exit."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread (an embedding caller): it stops us some other way.
            pass
    try:
        await serve(config, _announcer(config), stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stub; returns the exit status (0 stopped, 1 could not listen, 2 bad usage)."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as exc:
        sys.stderr.write(f"{_PROG}: error: {exc}\n")
        return 2
    except SystemExit as exc:
        # --help: argparse printed it and asked to exit.
        return exc.code if isinstance(exc.code, int) else 0
    try:
        asyncio.run(_run(config))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed.
        return 0
    except OSError as exc:
        sys.stderr.write(f"{_PROG}: error: cannot listen on {config.host}: {exc}\n")
        return 1
    return 0
