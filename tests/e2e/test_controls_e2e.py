"""Control characters and bidi overrides from a real learner reach no report (issue #22, 7).

A learner app (the reference, edited) prints right-to-left overrides, C1 controls, an ANSI
colour code, BEL and NUL on stdout and stderr, and answers its checkout with a body full of them;
its budgets.yaml holds them in a comment, a value and a key. Graded for real (the stub, the app),
with every report format written, under GitHub Actions (annotations, the job summary, the step
output): no output file, nor stdout or stderr, holds one of those code points raw.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from grader.formats import OutputFormat
from tests.conftest import Run, run_failfast
from tests.mutants import APP, REFERENCE, Edit, materialize
from tests.test_controls import assert_clean, html_read, json_strings, markdown_read, read_back

pytestmark = pytest.mark.slow

# As Python source (escapes, so the app's file stays ASCII): what the app prints and answers.
SPOOF = (
    r"rlo\u202eevil csi\x9b31mred nel\x85 esc\x1b[31mred bell\x07 nul\x00 lri\u2066in\u2069 "
    r"rlm\u200f del\x7f osc\x1b]8;;http://x\x07link st\x9c cr\rover"
)
PRINTS = (
    "import sys\n"
    f'print("out {SPOOF}", flush=True)\n'
    f'print("err {SPOOF}", file=sys.stderr, flush=True)\n'
)
HOSTILE_APP = (
    Edit(APP, "import asyncio\n", f"import asyncio\n{PRINTS}"),
    Edit(
        APP,
        '    """Charge the customer once per Idempotency-Key, within the api budget."""\n',
        '    """Charge the customer once per Idempotency-Key, within the api budget."""\n'
        + "".join(f"    {line}\n" for line in PRINTS.splitlines()[1:])
        + "    from fastapi.responses import PlainTextResponse\n\n"
        + f'    return PlainTextResponse("body {SPOOF}", status_code=200)\n',
    ),
)
# In YAML's double-quoted escapes: \e is ESC, \a BEL, \0 NUL.
YAML_SPOOF = r"full\u202e\x9b31m\x85\e[31m\a\0\u2066\u200f"
HOSTILE_TABLE = (
    Edit("budgets.yaml", "  jitter: full ", f'  jitter: "{YAML_SPOOF}" '),
    Edit("budgets.yaml", "retry_budget:", f'  "{YAML_SPOOF}": 1\nretry_budget:'),
    Edit("budgets.yaml", "layers:\n", "# the comment \u202e\u2066 of a learner\nlayers:\n"),
)


def grade_everything(tmp_path: Path, repo: Path, milestone: str) -> tuple[Run, dict[str, str]]:
    """Grade with every format written and GitHub Actions' files; each output's text by name."""
    out = tmp_path / "out"
    reports = [f"--report={form.value}={out / form.value}" for form in OutputFormat]
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "github-output"),
    }
    run = run_failfast("check", milestone, *reports, repo=repo, env=env, timeout_s=300)
    texts = {form.value: (out / form.value).read_text("utf-8") for form in OutputFormat}
    texts["job summary"] = (tmp_path / "summary.md").read_text("utf-8")
    step_output = (tmp_path / "github-output").read_text("ascii")
    (encoded,) = re.findall(r"^result=(\S+)$", step_output, re.MULTILINE)
    texts["classroom step output"] = base64.b64decode(encoded).decode("utf-8")
    texts["stdout"], texts["stderr"] = run.stdout, run.stderr
    return run, texts


def assert_no_control(texts: dict[str, str]) -> None:
    """No output holds a forbidden code point, raw or as its reader decodes it (JSON, XML, HTML)."""
    for name, text in texts.items():
        assert_clean(text, name)
        if name in set(OutputFormat):
            reads = read_back(OutputFormat(name), text)
        elif name == "job summary":
            reads = [markdown_read(text)]
        elif name == "classroom step output":
            reads = json_strings(json.loads(text))
        else:
            reads = []
        for n, read in enumerate(reads):
            assert_clean(read, f"{name} as read ({n})")


def test_a_learner_app_full_of_controls_reaches_no_output(tmp_path: Path) -> None:
    """Its output lines and its body are shown (FAIL), with every control made harmless."""
    repo = materialize(REFERENCE, tmp_path / "repo", HOSTILE_APP)
    run, texts = grade_everything(tmp_path, repo, "milestone-2")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL" in run.stdout and "m2.healthy-checkout" in run.stdout
    # What the learner's code printed and answered is there, visibly: not dropped.
    assert "out rlo" in run.stdout and "evil csi" in run.stdout
    assert "a body that is not JSON" in texts["json"]
    assert_no_control(texts)


def test_a_budget_table_full_of_controls_reaches_no_output(tmp_path: Path) -> None:
    """Its value and key are quoted (m1.budgets-valid FAIL); the comment is ignored."""
    repo = materialize(REFERENCE, tmp_path / "repo", HOSTILE_TABLE)
    run, texts = grade_everything(tmp_path, repo, "milestone-1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "retries.jitter must be one of" in run.stdout
    assert_no_control(texts)


def test_a_submission_named_with_controls_reaches_no_class_output(tmp_path: Path) -> None:
    """A repo folder named with an override and a C1 control: its row, page and progress line."""
    name = "sub\u202eevil\x9bx\u2066"
    materialize(REFERENCE, tmp_path / "class" / name)
    out = tmp_path / "grades"
    run = run_failfast(
        "grade", str(tmp_path / "class"), "--milestone", "milestone-1", "--out", str(out)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sub\ufffdevil\ufffdx\ufffd" in run.stdout  # the progress line names it, visibly
    texts = {"stdout": run.stdout, "stderr": run.stderr}
    texts |= {str(p.relative_to(out)): p.read_text("utf-8") for p in out.rglob("*") if p.is_file()}
    assert {"gradebook.csv", "summary.md", "index.html", f"{name}/report.json"} <= set(texts)
    assert_no_control({n: t for n, t in texts.items() if not n.endswith(".json")})
    for path, text in texts.items():
        if path.endswith(".json"):
            for read in json_strings(json.loads(text)):
                assert_clean(read, path)
        elif path.endswith(".html"):
            assert_clean(html_read(text), path)
        elif path.endswith(".md"):
            assert_clean(markdown_read(text), path)
    assert 'href="sub%E2%80%AEevil%C2%9Bx%E2%81%A6/report.html"' in texts["index.html"]
