"""m1.nginx-agrees on configs written here: it judges the location nginx serves POST /checkout from.

The location matching itself (exact, prefix, regex, nesting, units) is unit-tested in
tests/test_nginxconf.py; these run the check on a repo with the reference's table (nginx 10 s).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from checks.m1_budget_table import nginx_agrees
from grader.engine.context import Context
from grader.errors import CheckFailed
from grader.learner import budgets
from grader.learner.repo import LearnerRepo
from grader.model import Location
from tests.mutants import REFERENCE


def grade(tmp_path: Path, http_body: str) -> Context:
    """A repo with the reference's budgets.yaml and an nginx.conf whose http block is given."""
    shutil.copy(REFERENCE / "budgets.yaml", tmp_path / "budgets.yaml")
    (tmp_path / "nginx").mkdir(exist_ok=True)
    (tmp_path / "nginx" / "nginx.conf").write_text("events {}\nhttp {\n" + http_body + "\n}\n")
    return Context(LearnerRepo.open(tmp_path), budgets.COURSE, 0)


def test_checkout_location_is_judged_not_healthz(tmp_path: Path) -> None:
    """The issue's config: /checkout sets 10 s, /healthz keeps nginx's default: a PASS."""
    ctx = grade(
        tmp_path,
        "server {\n location /checkout {\n proxy_read_timeout 10;\n proxy_pass http://api;\n }\n"
        " location /healthz {\n proxy_pass http://api;\n }\n}",
    )
    passed = nginx_agrees(ctx)
    assert "location /checkout" in passed.measured and "10 s" in passed.measured


def test_location_inherits_from_server_in_any_unit(tmp_path: Path) -> None:
    """A location without its own timeout inherits the server's; 10000ms is 10 s."""
    ctx = grade(
        tmp_path,
        "server {\n proxy_read_timeout 10000ms;\n location / {\n proxy_pass http://api;\n }\n}",
    )
    assert "server block" in nginx_agrees(ctx).measured


def test_default_timeout_fails_on_the_judged_location(tmp_path: Path) -> None:
    """No proxy_read_timeout anywhere: nginx's 60 s, pointed at the location's line."""
    ctx = grade(tmp_path, "server {\n location /checkout {\n proxy_pass http://api;\n }\n}")
    with pytest.raises(CheckFailed) as failed:
        nginx_agrees(ctx)
    evidence = failed.value.evidence
    assert "default 60 s" in evidence.measured
    assert evidence.location == Location("nginx/nginx.conf", 4)


def test_regex_location_beats_prefix(tmp_path: Path) -> None:
    """A regex location wins over a prefix one, as in nginx: its 30 s timeout fails."""
    ctx = grade(
        tmp_path,
        "server {\n proxy_read_timeout 10s;\n location / {\n proxy_pass http://api;\n }\n"
        " location ~ ^/check {\n proxy_read_timeout 30s;\n proxy_pass http://api;\n }\n}",
    )
    with pytest.raises(CheckFailed) as failed:
        nginx_agrees(ctx)
    assert failed.value.evidence.location == Location("nginx/nginx.conf", 9)


def test_location_that_does_not_proxy_fails(tmp_path: Path) -> None:
    """A /checkout location that answers by itself means nginx is not in front of the api."""
    ctx = grade(
        tmp_path,
        "server {\n proxy_read_timeout 10s;\n location /checkout {\n root /srv;\n }\n"
        " location / {\n proxy_pass http://api;\n }\n}",
    )
    with pytest.raises(CheckFailed, match="does not proxy"):
        nginx_agrees(ctx)


def test_unparseable_config_fails_with_line(tmp_path: Path) -> None:
    """A config nginx would reject fails the check with its line."""
    ctx = grade(tmp_path, "server {\n location / {\n proxy_pass http://api;\n")
    with pytest.raises(CheckFailed) as failed:
        nginx_agrees(ctx)
    assert "nginx.conf:" in failed.value.evidence.measured
    assert failed.value.evidence.location is not None


def test_compose_forms_are_judged_like_the_plain_one(tmp_path: Path) -> None:
    """Upstream block, resolver, set and map variables, an include: the same PASS, same place."""
    (tmp_path / "nginx" / "conf.d").mkdir(parents=True)
    (tmp_path / "nginx" / "conf.d" / "checkout.conf").write_text(
        "location / {\n resolver 127.0.0.11 valid=10s;\n set $api http://$backend;\n"
        " proxy_read_timeout 10s;\n proxy_pass $api$request_uri;\n}\n"
    )
    ctx = grade(
        tmp_path,
        "upstream api { server api:8000; keepalive 4; }\n"
        # A map's keys are words of any kind, not directives: this one is not a timeout.
        "map $uri $backend { proxy_read_timeout 1s; default api; }\n"
        "types { text/html html; }\n"
        "server {\n include conf.d/*.conf;\n}",
    )
    passed = nginx_agrees(ctx)
    assert "location / (nginx/conf.d/checkout.conf:1)" in passed.measured, passed.measured
    assert "proxy_read_timeout 10 s, set in the location" in passed.measured
