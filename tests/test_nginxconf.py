"""Unit tests of judging the location nginx chooses for POST /checkout: timeout and upstream."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from grader.learner.nginxconf import (
    Judged,
    NginxConfError,
    judge,
    judge_file,
    parse_time,
    time_seconds,
)
from grader.learner.nginxroute import (
    MAX_EXPANSIONS,
    definitions,
    expand,
    rewire_address,
    shown,
)

PROXY = "proxy_pass http://api:8000;"
LOOPBACK = "127.0.0.1:18000"  # the API's address under the local backend


def write(tmp_path: Path, http: str, name: str = "nginx.conf") -> Path:
    """Write a whole nginx.conf whose http block holds ``http``."""
    path = tmp_path / name
    path.write_text("events {}\nhttp {\n" + http + "\n}\n")
    return path


def server(tmp_path: Path, body: str, http: str = "") -> Judged:
    """Judge a config of one server holding ``body``, under http directives ``http``."""
    return judge_file(write(tmp_path, f"{http}\nserver {{\nlisten 80;\n{body}\n}}"))


def test_exact_beats_prefix_and_regex(tmp_path: Path) -> None:
    """`location = /checkout` wins over a longer-matching prefix and over a regex."""
    judged = server(
        tmp_path,
        f"location /checkout {{ proxy_read_timeout 1s; {PROXY} }}\n"
        f"location ~ ^/checkout$ {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location = /checkout {{ proxy_read_timeout 3s; {PROXY} }}",
    )
    assert (judged.location, judged.location_line, judged.timeout_s) == (
        "location = /checkout",
        8,
        3.0,
    )


def test_longest_prefix_wins(tmp_path: Path) -> None:
    """Among `/`, `/check` and `/checkout` the longest matching prefix is chosen."""
    judged = server(
        tmp_path,
        f"location / {{ proxy_read_timeout 1s; {PROXY} }}\n"
        f"location /checkout {{ proxy_read_timeout 3s; {PROXY} }}\n"
        f"location /check {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location /checkouts {{ proxy_read_timeout 4s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location /checkout", 3.0)


def test_noregex_prefix_stops_regexes(tmp_path: Path) -> None:
    """A longest prefix with `^~` is chosen without trying regex locations."""
    judged = server(
        tmp_path,
        f"location ~ ^/checkout$ {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location ^~ /check {{ proxy_read_timeout 3s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location ^~ /check", 3.0)


def test_noregex_on_a_shorter_prefix_does_not_stop_regexes(tmp_path: Path) -> None:
    """Only the longest prefix's `^~` counts: a `^~ /` under a longer prefix does not."""
    judged = server(
        tmp_path,
        f"location ^~ / {{ {PROXY} }}\nlocation /checkout {{ {PROXY} }}\n"
        f"location ~ ^/check {{ proxy_read_timeout 2s; {PROXY} }}",
    )
    assert judged.location == "location ~ ^/check"


def test_regex_beats_prefix(tmp_path: Path) -> None:
    """A matching regex wins over the longest plain prefix."""
    judged = server(
        tmp_path,
        f"location /checkout {{ proxy_read_timeout 3s; {PROXY} }}\n"
        f"location ~ ^/check {{ proxy_read_timeout 2s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location ~ ^/check", 2.0)


def test_case_insensitive_regex(tmp_path: Path) -> None:
    """`~*` matches regardless of case; `~` does not."""
    judged = server(
        tmp_path,
        f"location / {{ {PROXY} }}\n"
        f"location ~ ^/CHECKOUT$ {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location ~* ^/CHECKOUT$ {{ proxy_read_timeout 3s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location ~* ^/CHECKOUT$", 3.0)


def test_first_matching_regex_wins(tmp_path: Path) -> None:
    """Regexes are tried in config order, the first match is chosen even if a later fits better."""
    judged = server(
        tmp_path,
        f"location ~ ^/pay {{ {PROXY} }}\n"
        f"location ~ out {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location ~ ^/checkout$ {{ proxy_read_timeout 3s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location ~ out", 2.0)


def test_regex_with_glued_modifier_and_pcre_named_group(tmp_path: Path) -> None:
    """`~*^/...` without a space and PCRE's `(?<name>...)` are read as nginx reads them."""
    judged = server(tmp_path, f"location ~*^/(?<what>checkout)$ {{ {PROXY} }}")
    assert judged.location == "location ~*^/(?<what>checkout)$"
    assert judged.proxies


def test_nested_location(tmp_path: Path) -> None:
    """A location nested in the longest prefix is searched the same way, and inherits from it."""
    judged = server(
        tmp_path,
        "location / {\n proxy_read_timeout 7s;\n"
        f" location /checkout {{\n {PROXY}\n }}\n"
        f" location /healthz {{ proxy_read_timeout 1s; {PROXY} }}\n}}",
    )
    assert judged.location == "location /checkout"
    assert (judged.location_line, judged.timeout_s, judged.timeout_line) == (8, 7.0, 7)
    assert judged.inherited_from == "enclosing location"


def test_nested_regex_then_outer_regex(tmp_path: Path) -> None:
    """A nested regex decides inside its prefix; outer regexes still beat a nested prefix."""
    nested = server(
        tmp_path,
        f"location / {{\n location ~ checkout {{ proxy_read_timeout 4s; {PROXY} }}\n {PROXY}\n}}",
    )
    assert (nested.location, nested.timeout_s) == ("location ~ checkout", 4.0)
    outer = judge_file(
        write(
            tmp_path,
            "server {\n"
            f"location / {{\n location /checkout {{ {PROXY} }}\n {PROXY}\n}}\n"
            f"location ~ ^/check {{ proxy_read_timeout 5s; {PROXY} }}\n}}",
            "outer.conf",
        )
    )
    assert (outer.location, outer.timeout_s) == ("location ~ ^/check", 5.0)


def test_inherits_from_server(tmp_path: Path) -> None:
    """A location without its own timeout inherits the server's."""
    judged = server(
        tmp_path,
        f"proxy_read_timeout 10s;\nlocation /checkout {{ {PROXY} }}",
        "proxy_read_timeout 30s;",
    )
    assert (judged.timeout_s, judged.inherited_from, judged.timeout_line) == (10.0, "server", 6)
    assert judged.summary(tmp_path) == (
        "POST /checkout is served by location /checkout (nginx.conf:7): "
        "proxy_read_timeout 10 s, set in its server block (nginx.conf:6)"
    )


def test_inherits_from_http(tmp_path: Path) -> None:
    """With nothing in server nor location, the http block's timeout applies."""
    judged = server(tmp_path, f"location /checkout {{ {PROXY} }}", "proxy_read_timeout 12s;")
    assert (judged.timeout_s, judged.inherited_from, judged.timeout_line) == (12.0, "http", 3)


def test_default_60_seconds(tmp_path: Path) -> None:
    """No proxy_read_timeout anywhere means nginx's 60 s default, with no line."""
    judged = server(tmp_path, f"location / {{ {PROXY} }}")
    assert (judged.timeout_s, judged.timeout_line, judged.inherited_from) == (60.0, None, "default")
    assert "nginx's default 60 s" in judged.summary()


def test_issue_checkout_set_healthz_default(tmp_path: Path) -> None:
    """The issue: /checkout sets 10, /healthz keeps the default: POST /checkout gets 10 s."""
    judged = server(
        tmp_path,
        f"location /checkout {{\n proxy_read_timeout 10;\n {PROXY}\n}}\n"
        f"location /healthz {{\n {PROXY}\n}}",
    )
    assert judged.location == "location /checkout"
    assert (judged.location_line, judged.timeout_s, judged.timeout_line) == (6, 10.0, 7)
    assert (judged.inherited_from, judged.proxies, judged.redirects) == ("location", True, False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10", 10),
        ("10s", 10),
        ("1m", 60),
        ("500ms", 0.5),
        ("1m30s", 90),
        ("1h", 3600),
        ("1d", 86400),
        ("2w", 14 * 86400),
        ("1m30", 90),  # a trailing bare number is seconds
        ("1m 30s", 90),  # nginx skips spaces after a unit
        ("0", 0),
    ],
)
def test_time_units(text: str, seconds: float) -> None:
    """Time values convert to seconds as nginx reads them for proxy_read_timeout."""
    assert time_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["10x", "", "s", "ms", "1.5s", "-1", "ten", "30s1m", "1s1s", "1y", "1M", "9" * 30]
)
def test_time_rejects_what_nginx_rejects(text: str) -> None:
    """Unknown units, fractions, units out of order, y and M in an msec value, overflow: None."""
    assert time_seconds(text) is None


def test_years_and_months_are_second_units() -> None:
    """`y` (365 days) and `M` (30 days) exist for second values, which reject `ms`."""
    assert parse_time("1y", is_sec=True) == 365 * 86400
    assert parse_time("1M2d", is_sec=True) == 32 * 86400
    assert parse_time("500ms", is_sec=True) is None
    assert parse_time("1m30s") == 90_000


def test_invalid_timeout_in_config_has_its_line(tmp_path: Path) -> None:
    """A proxy_read_timeout nginx would reject raises NginxConfError with its line."""
    with pytest.raises(NginxConfError) as error:
        server(tmp_path, f"location / {{\n proxy_read_timeout 10x;\n {PROXY}\n}}")
    assert error.value.line == 7
    assert '"10x"' in error.value.message
    assert str(error.value).endswith("nginx.conf:7: " + error.value.message)


def test_timeout_where_nginx_refuses_it(tmp_path: Path) -> None:
    """proxy_read_timeout inside `if` is refused by nginx, even outside the judged location."""
    with pytest.raises(NginxConfError, match="not allowed here") as error:
        server(
            tmp_path,
            f"location /checkout {{ {PROXY} }}\n"
            f"location /healthz {{\n if ($arg_x) {{ proxy_read_timeout 1s; }}\n {PROXY}\n}}",
        )
    assert error.value.line == 8


def test_duplicate_timeout(tmp_path: Path) -> None:
    """Two proxy_read_timeout in one block: nginx says it is duplicate."""
    with pytest.raises(NginxConfError, match="duplicate") as error:
        server(tmp_path, "location / {\n proxy_read_timeout 1s;\n proxy_read_timeout 2s;\n}")
    assert error.value.line == 8


def test_default_server_is_judged(tmp_path: Path) -> None:
    """With several servers, the one whose listen has default_server is judged."""
    path = write(
        tmp_path,
        f"server {{\n listen 80;\n server_name a.test;\n location / {{ {PROXY} }}\n}}\n"
        "server {\n listen 80 default_server;\n server_name b.test;\n proxy_read_timeout 9s;\n"
        f" location / {{ {PROXY} }}\n}}",
    )
    judged = judge_file(path)
    assert (judged.server_line, judged.server_choice, judged.server_count) == (
        8,
        "default_server",
        2,
    )
    assert (judged.server_names, judged.timeout_s) == (("b.test",), 9.0)
    assert judged.summary(tmp_path) == (
        "POST /checkout is served by location / (nginx.conf:12), in the server at nginx.conf:8 "
        "(marked default_server of 2 servers: the grader does not know the Host): "
        "proxy_read_timeout 9 s, set in its server block (nginx.conf:11)"
    )


def test_first_server_without_default_server(tmp_path: Path) -> None:
    """With several servers and no default_server, the first is judged, and says so."""
    path = write(
        tmp_path,
        f"server {{\n listen 80;\n proxy_read_timeout 8s;\n location / {{ {PROXY} }}\n}}\n"
        f"server {{\n listen 81;\n location / {{ {PROXY} }}\n}}",
    )
    judged = judge_file(path)
    assert (judged.server_line, judged.server_choice, judged.timeout_s) == (3, "first", 8.0)


def test_location_without_proxy_pass(tmp_path: Path) -> None:
    """A chosen location that serves files instead of proxying reports proxies False."""
    judged = server(tmp_path, f"location / {{ {PROXY} }}\nlocation /checkout {{ root /srv; }}")
    assert (judged.location, judged.proxies) == ("location /checkout", False)
    assert judged.summary().endswith("; it does not proxy_pass")


def test_no_location_matches(tmp_path: Path) -> None:
    """When no location matches, the server itself serves the request, without proxying."""
    judged = server(tmp_path, f"location /healthz {{ {PROXY} }}")
    assert (judged.location, judged.location_line, judged.proxies) == (None, None, False)
    assert judged.location_label == "server (no location matches)"
    assert "served by the server at nginx.conf:4 itself (no location matches)" in judged.summary(
        tmp_path
    )


def test_named_location_ignored(tmp_path: Path) -> None:
    """`location @checkout` is never matched against the URI."""
    judged = server(
        tmp_path,
        f"location @checkout {{ proxy_read_timeout 2s; {PROXY} }}\n"
        f"location / {{ proxy_read_timeout 3s; {PROXY} }}",
    )
    assert (judged.location, judged.timeout_s) == ("location /", 3.0)


def test_limit_except_does_not_change_the_location(tmp_path: Path) -> None:
    """limit_except stays part of its location; its proxy_pass serves the methods it lists not."""
    judged = server(
        tmp_path,
        f"location /checkout {{\n proxy_read_timeout 10s;\n limit_except GET {{ {PROXY} }}\n}}",
    )
    assert (judged.location, judged.timeout_s, judged.proxies) == ("location /checkout", 10.0, True)
    get = judge_file(tmp_path / "nginx.conf", method="GET")
    assert not get.proxies


def test_auto_redirect(tmp_path: Path) -> None:
    """`location /checkout/` with proxy_pass makes nginx answer /checkout with a 301, not proxy."""
    judged = server(
        tmp_path,
        f"location / {{ {PROXY} }}\n"
        f"location ~ ^/checkout$ {{ {PROXY} }}\n"
        f"location /checkout/ {{ proxy_read_timeout 10s; {PROXY} }}",
    )
    assert (judged.location, judged.redirects, judged.proxies) == (
        "location /checkout/",
        True,
        False,
    )


def test_include_resolved(tmp_path: Path) -> None:
    """A server in an included file is judged, with the included file's lines."""
    (tmp_path / "conf.d").mkdir()
    included = tmp_path / "conf.d" / "checkout.conf"
    included.write_text(
        f"server {{\n  listen 80;\n  location /checkout {{\n    proxy_read_timeout 10s;\n"
        f"    {PROXY}\n  }}\n}}\n"
    )
    judged = judge_file(write(tmp_path, "proxy_read_timeout 30s;\ninclude conf.d/*.conf;"))
    assert (judged.server_file, judged.server_line) == (str(included), 1)
    assert (judged.location_file, judged.location_line) == (str(included), 3)
    assert (judged.timeout_file, judged.timeout_line, judged.timeout_s) == (str(included), 4, 10.0)
    assert judged.unresolved_includes == ()


def test_include_missing_here_is_listed_not_fatal(tmp_path: Path) -> None:
    """`include mime.types;` of the nginx image is no error; it is listed as unresolved."""
    path = write(tmp_path, f"include mime.types;\nserver {{\n location / {{ {PROXY} }}\n}}")
    judged = judge_file(path)
    assert [(i.line, i.pattern) for i in judged.unresolved_includes] == [(3, "mime.types")]
    assert judged.location == "location /"


def test_unparseable_config(tmp_path: Path) -> None:
    """A config crossplane cannot parse raises NginxConfError with its line."""
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\nhttp {\n server {\n  location / {\n   proxy_pass x;\n")
    with pytest.raises(NginxConfError, match="unexpected end of file") as error:
        judge_file(path)
    assert (error.value.line, error.value.file) == (5, str(path))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("location /a { location /b { } }", 'location "/b" is outside location "/a"'),
        ("location /a { }\nlocation /a { }", 'duplicate location "/a"'),
        ("location ~~ /a { }", 'invalid location modifier "~~"'),
        ("location ~ ( { }", "cannot evaluate the regex"),
    ],
)
def test_locations_nginx_refuses(tmp_path: Path, body: str, message: str) -> None:
    """Locations nginx refuses (or a regex that cannot be evaluated) raise NginxConfError."""
    with pytest.raises(NginxConfError, match=message.replace("(", r"\(")):
        server(tmp_path, body)


def test_judge_takes_a_payload() -> None:
    """judge() works on crossplane's payload as a dict, without a file."""
    payload: dict[str, Any] = {
        "status": "ok",
        "errors": [],
        "config": [
            {
                "file": "nginx.conf",
                "status": "ok",
                "errors": [],
                "parsed": [
                    {
                        "directive": "http",
                        "line": 1,
                        "args": [],
                        "block": [
                            {
                                "directive": "server",
                                "line": 2,
                                "args": [],
                                "block": [
                                    {
                                        "directive": "location",
                                        "line": 3,
                                        "args": ["=", "/checkout"],
                                        "block": [
                                            {"directive": "proxy_pass", "line": 4, "args": ["x"]},
                                            {
                                                "directive": "proxy_read_timeout",
                                                "line": 5,
                                                "args": ["1m30s"],
                                            },
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    judged = judge(payload)
    assert (judged.location, judged.timeout_s, judged.timeout_line) == (
        "location = /checkout",
        90.0,
        5,
    )


def test_no_http_block(tmp_path: Path) -> None:
    """A config without http serves no HTTP: NginxConfError without a line."""
    path = tmp_path / "nginx.conf"
    path.write_text("events {}\n")
    with pytest.raises(NginxConfError, match="no http block") as error:
        judge_file(path)
    assert error.value.line is None


def test_the_proxy_pass_the_request_reaches_is_named(tmp_path: Path) -> None:
    """The judgement names the proxy_pass used: a limit_except's own for the methods it covers."""
    judged = server(
        tmp_path,
        "location /checkout {\n set $api http://api:8000;\n proxy_pass $api;\n"
        " limit_except GET {\n proxy_pass http://backend;\n }\n}\n"
        f"location /other {{ {PROXY} }}",
    )
    assert judged.proxy_pass is not None
    assert (judged.proxy_pass.text, judged.proxy_pass.line) == ("proxy_pass http://backend", 10)
    get = judge_file(tmp_path / "nginx.conf", method="GET")
    assert get.proxy_pass is not None
    assert (get.proxy_pass.text, get.proxy_pass.line) == ("proxy_pass $api", 8)
    redirected = server(tmp_path, f"location /checkout/ {{ {PROXY} }}")
    assert redirected.redirects and redirected.proxy_pass is None


def test_value_blocks_are_not_read_as_directives(tmp_path: Path) -> None:
    """A map's, geo's or types' entries are keys and values: a key may look like a directive."""
    judged = server(
        tmp_path,
        "location / { proxy_read_timeout 10s; proxy_pass $api; }",
        http="map $uri $api { proxy_read_timeout 1s; default http://api:8000; }\n"
        "geo $g { default 0; proxy_read_timeout 1; }\ntypes { text/html html; }",
    )
    assert (judged.timeout_s, judged.proxies) == (10.0, True)


# --- the local backend's rewiring of the api's address (grader/learner/nginxroute.py) ---


def test_addresses_are_rewired_where_written_whole() -> None:
    """http://api:8000 with any tail, and a bare api:8000, are rewired; nothing else is."""
    assert rewire_address("http://api:8000", LOOPBACK) == f"http://{LOOPBACK}"
    assert rewire_address("http://API:8000/v1/", LOOPBACK) == f"http://{LOOPBACK}/v1/"
    assert (
        rewire_address("https://api:8000$request_uri", LOOPBACK)
        == f"https://{LOOPBACK}$request_uri"
    )
    assert rewire_address("api:8000", LOOPBACK) == LOOPBACK
    assert rewire_address("api:8000/v1", LOOPBACK) == f"{LOOPBACK}/v1"
    for untouched in ("http://api:80001", "http://apiv:8000", "http://api", "api", "$api"):
        assert rewire_address(untouched, LOOPBACK) == untouched


def _defs(*sets: tuple[str, str]) -> dict[str, list[Mapping[str, Any]]]:
    """Variable definitions as `set` statements would give them."""
    return definitions([{"directive": "set", "args": [f"${n}", v]} for n, v in sets])


def test_variables_expand_to_every_value_they_may_take() -> None:
    """Set and map values are followed through variables; unknown ones and loops stay marked."""
    defs = _defs(("h", "http://api:8000"), ("api", "$h/v1"), ("api", "${h}$uri"), ("x", "$x"))
    assert [shown(v) for v in expand("$api", defs)] == ["http://api:8000/v1", "http://api:8000$uri"]
    assert [shown(v) for v in expand("http://$x", defs)] == ["http://$x"]
    entries = [{"directive": "default", "args": ["a:1"]}, {"directive": "~^/c", "args": ["b:2"]}]
    mapped = definitions([{"directive": "map", "args": ["$uri", "$m"], "block": entries}])
    assert expand("http://$m", mapped) == ["http://a:1", "http://b:2"]


def test_expansion_is_bounded_whatever_the_config() -> None:
    """Variables defined from variables, many times over: a bounded answer, at once."""
    sets = [(f"v{i}", f"${{v{i + 1}}}${{v{i + 1}}}") for i in range(40)]
    sets += [(f"v{i}", f"x{i}") for i in range(41)]
    started = time.monotonic()
    assert len(expand("$v0", _defs(*sets))) == MAX_EXPANSIONS + 1
    assert time.monotonic() - started < 1.0
