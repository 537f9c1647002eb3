"""k6 scripts that import modules from the network: refused before k6 starts, whatever DNS does.

The grader never fetches a module (grading is reproducible offline): an import of
https://jslib.k6.io/... is m1.k6-thresholds' FAIL naming the file, the line and how to vendor
it, in milliseconds; the same script with the module vendored passes with the real k6.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Run, _inherited, grader_crashed, leftovers, run_failfast
from tests.mutants import REFERENCE, Edit, materialize

SCRIPT = "loadtest/checkout.js"
JSLIB = "https://jslib.k6.io/k6-utils/1.4.0/index.js"
ANCHOR = "import exec from 'k6/execution';\n"
# The amounts of the reference's checkouts, now jittered by the module's function: the script
# uses what it imports, so k6 must load the module to read the script at all.
AMOUNT = "const amount = AMOUNT_BASE + exec.scenario.iterationInTest;"
JITTERED = "const amount = AMOUNT_BASE + exec.scenario.iterationInTest + randomIntBetween(0, 0);"
# A module small enough to write here (the network is not reachable): the learner's vendored
# copy, with the header a vendored file keeps, URL included.
VENDORED = f"""// Vendored from {JSLIB} (k6-utils 1.4.0):
// curl -fsSL -o loadtest/vendor/k6-utils.js {JSLIB}
export function randomIntBetween(min, max) {{
  return Math.floor(Math.random() * (max - min + 1) + min);
}}
"""
CHECK_LIMIT_S = 2.0  # the check itself: no k6 runs, whatever the network does


def with_import(tmp_path: Path, specifier: str) -> Path:
    """The reference solution whose k6 script imports randomIntBetween from ``specifier``."""
    return materialize(
        REFERENCE,
        tmp_path / "repo",
        (
            Edit(SCRIPT, ANCHOR, f"{ANCHOR}import {{ randomIntBetween }} from '{specifier}';\n"),
            Edit(SCRIPT, AMOUNT, JITTERED),
        ),
    )


def line_of(repo: Path, relative: str, text: str) -> int:
    """The 1-based line of ``relative`` that holds ``text``."""
    lines = (repo / relative).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def thresholds_check(run: Run) -> dict[str, Any]:
    """m1.k6-thresholds' entry of the JSON report."""
    return run.check("m1.k6-thresholds")


def test_remote_import_fails_fast_with_what_to_vendor(tmp_path: Path) -> None:
    """An import from jslib.k6.io: FAIL naming file, line and URL, and how to vendor it."""
    repo = with_import(tmp_path, JSLIB)
    line = line_of(repo, SCRIPT, JSLIB)
    started = time.monotonic()
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    wall = time.monotonic() - started
    result = thresholds_check(run)
    print(f"check milestone-1: {wall:.2f} s end to end, m1.k6-thresholds {result['duration_s']} s")
    assert run.returncode == 1
    assert result["status"] == "FAIL"
    assert result["summary"].startswith(f"{SCRIPT}:{line} imports {JSLIB} from the network")
    assert result["location"] == {"path": SCRIPT, "line": line}
    assert f"curl -fsSL --create-dirs -o loadtest/vendor/k6-utils.js {JSLIB}" in result["hint"]
    assert "import { randomIntBetween } from './vendor/k6-utils.js'" in result["hint"]
    assert result["duration_s"] < CHECK_LIMIT_S
    # The rest of milestone 1 is graded as before: only the script's check is refused.
    assert {k: v for k, v in run.statuses().items() if k != "m1.k6-thresholds"} == {
        "m1.budgets-valid": "PASS",
        "m1.layers-ordered": "PASS",
        "m1.retry-policy": "PASS",
        "m1.nginx-agrees": "PASS",
    }


def test_remote_import_through_a_local_module(tmp_path: Path) -> None:
    """A local helper importing from the network: FAIL located in the helper, with the chain."""
    repo = with_import(tmp_path, "./lib/random.js")
    helper = repo / "loadtest/lib/random.js"
    helper.parent.mkdir()
    helper.write_text(
        f"// Random numbers for amounts.\nexport {{ randomIntBetween }} from '{JSLIB}';\n"
    )
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    result = thresholds_check(run)
    assert result["status"] == "FAIL"
    assert result["location"] == {"path": "loadtest/lib/random.js", "line": 2}
    through = f"imported through {SCRIPT}:{line_of(repo, SCRIPT, './lib/random.js')}"
    assert through in result["summary"]
    assert "-o loadtest/lib/vendor/k6-utils.js" in result["hint"]
    assert result["duration_s"] < CHECK_LIMIT_S


def test_vendored_module_passes_with_real_k6(tmp_path: Path) -> None:
    """The module downloaded into the repo and imported by relative path: k6 reads it, PASS."""
    repo = with_import(tmp_path, "./vendor/k6-utils.js")
    (repo / "loadtest/vendor").mkdir()
    (repo / "loadtest/vendor/k6-utils.js").write_text(VENDORED)
    run = run_failfast("check", "milestone-1", "--format", "json", repo=repo)
    assert run.returncode == 0, run.stdout
    assert thresholds_check(run)["status"] == "PASS"
    # k6 itself read the vendored module: without it, the script is unreadable (not refused).
    (repo / "loadtest/vendor/k6-utils.js").unlink()
    missing = thresholds_check(run_failfast("check", "milestone-1", "--format", "json", repo=repo))
    assert missing["status"] == "FAIL"
    assert missing["summary"] == f"k6 cannot read {SCRIPT}"
    assert "vendor/k6-utils.js" in missing["measured"]


@pytest.mark.slow
def test_loadtest_refuses_before_starting_k6(tmp_path: Path) -> None:
    """The grader's own load test importing from the network: lt.k6-run stops before k6 runs."""
    # The loadtest milestone runs the grader's script, never the learner's: a copy of the
    # grader's `loadtest` package, first on the path, holds the import.
    shadow = tmp_path / "shadow" / "loadtest"
    shadow.mkdir(parents=True)
    shutil.copy(ROOT / "loadtest" / "__init__.py", shadow)
    grader_script = (ROOT / SCRIPT).read_text()
    anchor = "import { Counter } from 'k6/metrics';\n"
    assert anchor in grader_script
    (shadow / "checkout.js").write_text(
        grader_script.replace(anchor, f"{anchor}import {{ uuidv4 }} from '{JSLIB}';\n")
    )
    repo = materialize(REFERENCE, tmp_path / "repo")
    env = {**_inherited(), "PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}", "COLUMNS": "100"}
    argv = [sys.executable, "-m", "grader", "check", "loadtest", "--format", "json"]
    started = time.monotonic()
    # Not run_failfast: it runs from the repo root, whose loadtest package would win.
    proc = subprocess.Popen(
        [*argv, "--repo", str(repo)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=120)
    print(f"check loadtest: {time.monotonic() - started:.2f} s end to end")
    assert not grader_crashed(stdout + stderr), stdout + stderr
    assert leftovers(proc.pid, repo) == []
    run = Run(argv, proc.returncode, stdout, stderr, proc.pid, json.loads(stdout))
    k6_run = run.check("lt.k6-run")
    assert run.returncode == 2
    assert k6_run["status"] == "ERROR"
    assert "k6 was not started" in k6_run["summary"] and JSLIB in k6_run["summary"]
    assert k6_run["duration_s"] < CHECK_LIMIT_S
    # The checks judging the run are not run: there is no run.
    others = {k: v for k, v in run.statuses().items() if k != "lt.k6-run"}
    assert len(others) == 4 and set(others.values()) == {"SKIP"}


# A DNS server that takes every query and answers none, on the namespace's loopback.
SINK = """
import socket, time
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 53))
tcp = socket.socket(); tcp.bind(("127.0.0.1", 53)); tcp.listen(64)
time.sleep(120)  # killed long before, by the script that started it
"""


def blackhole(argv: list[str]) -> list[str]:
    """``argv`` in new network and mount namespaces whose DNS (``$SINK``) never answers.

    The mount namespace is private: the bind mount over /etc/resolv.conf is seen by ``argv``
    alone, and is gone with it.
    """
    script = (
        'ip link set lo up && printf "nameserver 127.0.0.1\\n" > "$RESOLV" '
        '&& mount --bind "$RESOLV" /etc/resolv.conf || exit 97\n'
        f'{sys.executable} -c "$SINK" & sink=$!\n'
        "sleep 0.3\n"
        '"$@"; code=$?\n'
        'kill "$sink"; wait "$sink" 2>/dev/null\n'
        "exit $code\n"
    )
    return ["unshare", "-nm", "--propagation", "private", "sh", "-c", script, "sh", *argv]


@pytest.mark.slow
def test_dns_that_never_answers_changes_nothing(tmp_path: Path) -> None:
    """Where DNS never answers (k6 waited 20 s there), the FAIL comes as fast, and vendored PASS."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip to make a network whose DNS never answers")
    probe = subprocess.run(["unshare", "-nm", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow network namespaces: {probe.stderr!r}")
    # The control: in that network, a name lookup hangs (glibc's resolver, cut at 3 s).
    lookup = "import socket; socket.getaddrinfo('jslib.k6.io', 443)"
    env = {**_inherited(), "RESOLV": str(tmp_path / "resolv.conf"), "SINK": SINK, "COLUMNS": "100"}
    control = blackhole(["timeout", "3", sys.executable, "-c", lookup])
    assert subprocess.run(control, env=env, capture_output=True, timeout=30).returncode == 124
    for specifier, status in ((JSLIB, "FAIL"), ("./vendor/k6-utils.js", "PASS")):
        repo = with_import(tmp_path / status, specifier)
        (repo / "loadtest/vendor").mkdir()
        (repo / "loadtest/vendor/k6-utils.js").write_text(VENDORED)
        argv = [sys.executable, "-m", "grader", "check", "milestone-1", "--format", "json"]
        started = time.monotonic()
        done = subprocess.run(
            blackhole([*argv, "--repo", str(repo)]),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        wall = time.monotonic() - started
        assert done.returncode != 97, done.stderr  # the namespace was made
        assert not grader_crashed(done.stdout + done.stderr), done.stdout + done.stderr
        run = Run(argv, done.returncode, done.stdout, done.stderr, 0, json.loads(done.stdout))
        result = thresholds_check(run)
        print(f"{status}: {wall:.2f} s end to end, m1.k6-thresholds {result['duration_s']} s")
        assert result["status"] == status
        assert result["duration_s"] < CHECK_LIMIT_S
