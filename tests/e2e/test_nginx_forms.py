"""m2.edge-answers-first with the reference's nginx.conf in the forms docker-compose users write.

The local backend runs the learner's nginx for real, its upstream rewired to the API on
loopback (grader/backends/local/edge.py, grader/learner/nginxroute.py). Each form of the same
config (a host, an upstream block, a variable set with a Docker resolver, a map, a URI part,
an include) grades milestone 2 exactly as the original does; a form the local backend cannot
run is SKIP naming its directive and line, never FAIL; a wrong timeout in the variable form
still FAILs, so the rewiring does not make everything pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_failfast
from tests.mutants import REFERENCE, Edit, materialize

pytestmark = pytest.mark.slow
CHECK = "m2.edge-answers-first"
CONF = "nginx/nginx.conf"
PASS_TO_API = "proxy_pass http://api:8000;"
LOCATION_LINE = 18  # `location / {` in the reference's nginx.conf
PROXY_PASS_LINE = 19  # its proxy_pass


def _in_location(text: str) -> Edit:
    """The reference's proxy_pass replaced by ``text``."""
    return Edit(CONF, PASS_TO_API, text)


def _before_server(text: str) -> Edit:
    """``text`` on a line of its own in http, before the server block."""
    return Edit(CONF, "    server {\n", f"    {text}\n    server {{\n")


FORMS: dict[str, tuple[Edit, ...]] = {
    "host": (),
    "upstream-block": (
        _before_server("upstream backend { server api:8000 max_fails=0; keepalive 8; }"),
        _in_location("proxy_pass http://backend;"),
    ),
    "set-variable-with-docker-resolver": (
        _in_location("resolver 127.0.0.11 valid=10s; set $api http://api:8000; proxy_pass $api;"),
    ),
    "map": (
        _before_server("map $request_method $api { default http://api:8000; }"),
        _in_location("resolver 127.0.0.11; proxy_pass $api$request_uri;"),
    ),
    "uri-part": (_in_location("proxy_pass http://api:8000/;"),),
}


def _statuses(run: Any) -> dict[str, str]:
    """Check id -> status, from a run's JSON report."""
    return {c["id"]: c["status"] for c in run.report["checks"]}


def _include_form(repo: Path) -> None:
    """Move the location into nginx/conf.d/checkout.conf, included by a path relative to it."""
    conf = repo / CONF
    text = conf.read_text("utf-8")
    start = text.index("        location / {")
    end = text.rindex("    }\n}")
    (repo / "nginx" / "conf.d").mkdir()
    (repo / "nginx" / "conf.d" / "checkout.conf").write_text(text[start:end], "utf-8")
    conf.write_text(text[:start] + "        include conf.d/*.conf;\n" + text[end:], "utf-8")


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The edge check's statuses, and its dependencies', with the reference's nginx.conf."""
    repo = materialize(REFERENCE, tmp_path_factory.mktemp("original") / "repo")
    run = run_failfast("check", "milestone-2", "--format", "json", "--target", CHECK, repo=repo)
    return _statuses(run)


@pytest.mark.parametrize("form", [*FORMS, "include"])
def test_each_compose_form_grades_as_the_original(
    form: str, original: dict[str, str], tmp_path: Path, grade_json: Any
) -> None:
    """The config in this form: the edge check PASS, and what it needs as with the original."""
    repo = materialize(REFERENCE, tmp_path / "repo", FORMS.get(form, ()))
    if form == "include":
        _include_form(repo)
    # Only the edge check reads nginx.conf: the form is graded on it and its dependencies.
    run = grade_json("milestone-2", repo, "--target", CHECK)
    entry = next(c for c in run.report["checks"] if c["id"] == CHECK)
    assert entry["status"] == "PASS", entry
    assert entry["data"]["status"] == 504 and not entry["data"]["nginx_page"], entry
    assert _statuses(run) == original
    resolver = any("resolver" in edit.new for edit in FORMS.get(form, ()))
    assert resolver == ("its resolver left out" in entry["measured"]), entry["measured"]
    assert set(original.values()) == {"PASS"} and CHECK in original
    assert run.returncode == 0


CANNOT_RUN = {
    "unix-socket": (
        (_in_location("proxy_pass http://unix:/run/api.sock;"),),
        f"{CONF}:{PROXY_PASS_LINE}: `proxy_pass http://unix:/run/api.sock`",
    ),
    "include-outside-the-repo": (
        (Edit(CONF, "    server {\n", "    include /etc/nginx/conf.d/*.conf;\n    server {\n"),),
        f"{CONF}:15: `include /etc/nginx/conf.d/*.conf`",
    ),
}


@pytest.mark.parametrize("form", list(CANNOT_RUN))
def test_a_form_it_cannot_run_is_named_never_failed(
    form: str, tmp_path: Path, grade_json: Any
) -> None:
    """A form the local backend cannot run: SKIP naming directive and file:line; exit 0."""
    edits, named = CANNOT_RUN[form]
    run = grade_json(
        "milestone-2", materialize(REFERENCE, tmp_path / "repo", edits), "--target", CHECK
    )
    entry = next(c for c in run.report["checks"] if c["id"] == CHECK)
    assert entry["status"] == "SKIP", entry
    assert entry["measured"].startswith(named), entry["measured"]
    assert named.split(": ", 1)[1] in entry["summary"]
    assert "--backend docker" in entry["hint"] and "Not a failure of yours" in entry["hint"]
    assert "FAIL" not in _statuses(run).values()
    assert run.returncode == 0


def test_a_wrong_timeout_in_the_variable_form_still_fails(tmp_path: Path, grade_json: Any) -> None:
    """Nginx giving up after 1 s, its upstream in a variable: nginx's own 504, a FAIL."""
    edits = (
        *FORMS["set-variable-with-docker-resolver"],
        Edit(CONF, "proxy_read_timeout 10s;", "proxy_read_timeout 1s;"),
    )
    run = grade_json(
        "milestone-2", materialize(REFERENCE, tmp_path / "repo", edits), "--target", CHECK
    )
    entry = next(c for c in run.report["checks"] if c["id"] == CHECK)
    assert entry["status"] == "FAIL", entry
    assert entry["data"]["nginx_page"] and entry["data"]["status"] == 504
    assert entry["location"] == {"path": CONF, "line": LOCATION_LINE}
    assert "proxy_read_timeout" in entry["hint"]
    assert run.returncode == 1


def test_a_host_left_to_resolve_at_run_time_is_not_a_failure(
    tmp_path: Path, grade_json: Any
) -> None:
    """A proxy_pass in an `if`, its host built from a variable: nginx must resolve it; SKIP.

    Under compose Docker's resolver answers; here nginx has none, and its own 502 says nothing
    of the learner's config: the check names the proxy_pass and does not fail.
    """
    edit = _in_location(
        "resolver 127.0.0.11; set $svc api;\n"
        "            if ($request_method = POST) { proxy_pass http://$svc:8000; }\n"
        "            proxy_pass http://api:8000;"
    )
    run = grade_json(
        "milestone-2", materialize(REFERENCE, tmp_path / "repo", (edit,)), "--target", CHECK
    )
    entry = next(c for c in run.report["checks"] if c["id"] == CHECK)
    assert entry["status"] == "SKIP", entry
    assert entry["measured"].startswith(f"{CONF}:21: `proxy_pass http://api:8000`"), entry
    assert "no resolver defined to resolve api" in entry["measured"]
    assert entry["duration_s"] < 3, "nginx waited for a resolver instead of answering at once"
    assert "FAIL" not in _statuses(run).values()
    assert run.returncode == 0
