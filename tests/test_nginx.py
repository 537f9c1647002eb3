"""Unit tests of reading proxy_read_timeout out of an nginx config with crossplane."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.m1_budget_table import nginx_seconds, proxy_read_timeouts
from grader.errors import CheckFailed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10", 10), ("10s", 10), ("500ms", 0.5), ("1m", 60), ("1m30s", 90), ("2h", 7200)],
)
def test_nginx_time_units(text: str, seconds: float) -> None:
    """Nginx time values convert to seconds."""
    assert nginx_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10x", "s", "1.5s", "ten"])
def test_nginx_time_rejects_nonsense(text: str) -> None:
    """What nginx would reject is None."""
    assert nginx_seconds(text) is None


def conf(tmp_path: Path, body: str) -> Path:
    """Write an nginx.conf whose http block holds ``body``."""
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n" + body + "\n}\n")
    return path


def test_location_inherits_from_server(tmp_path: Path) -> None:
    """A location without its own timeout inherits the server's."""
    path = conf(
        tmp_path,
        "server {\n proxy_read_timeout 10s;\n location / {\n proxy_pass http://api;\n }\n}",
    )
    assert proxy_read_timeouts(path) == [("location /", 6, 10.0, 4)]


def test_location_without_any_timeout_gets_nginx_default(tmp_path: Path) -> None:
    """No proxy_read_timeout anywhere means nginx's 60 s default."""
    path = conf(tmp_path, "server {\n location /checkout {\n proxy_pass http://api;\n }\n}")
    assert proxy_read_timeouts(path) == [("location /checkout", 5, 60.0, None)]


def test_own_timeout_wins(tmp_path: Path) -> None:
    """A location's own timeout overrides the server's."""
    path = conf(
        tmp_path,
        "proxy_read_timeout 30s;\nserver {\n location / {\n proxy_read_timeout 9s;\n"
        " proxy_pass http://api;\n }\n}",
    )
    assert [t[2] for t in proxy_read_timeouts(path)] == [9.0]


def test_unparseable_config_fails_with_line(tmp_path: Path) -> None:
    """A config nginx would reject fails the check with its line."""
    path = conf(tmp_path, "server {\n location / {\n proxy_pass http://api;\n")
    with pytest.raises(CheckFailed) as failed:
        proxy_read_timeouts(path)
    assert "nginx.conf:" in failed.value.evidence.measured
