"""The local edge: its rewiring of a learner's nginx.conf (pure), then a real nginx started."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import crossplane
import httpx
import pytest

from grader.backends.local.edge import (
    NO_NGINX,
    TEMP_PATHS,
    LocalEdge,
    Rewired,
    find_nginx,
    rewire,
    start_local_edge,
)
from grader.errors import EdgeUnavailable
from grader.learner import nginxconf
from grader.learner.nginxroute import refusal
from grader.learner.repo import LearnerRepo
from grader.process.procs import ManagedProcess, ProcessTracker
from tests.mutants import REFERENCE, TEMPLATE

LISTEN, API = "127.0.0.1:18080", "127.0.0.1:18000"
PREFIX = Path("/tmp/failfast-edge-test")
# The directives the rewiring may change, add or drop; everything else must come out as written.
WIRED = {"listen", "proxy_pass", "pid", "user", "daemon", "error_log", "access_log", "server"}


def rewired(conf: str, tmp_path: Path, **kwargs: Any) -> Rewired:
    """Rewire a config written to tmp_path/nginx/nginx.conf (read as the grader reads it)."""
    path = tmp_path / "nginx" / "nginx.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(conf, "utf-8")
    payload = nginxconf.parse(path, tmp_path)
    return rewire(payload, listen=LISTEN, api=API, prefix=PREFIX, **kwargs)


def flat(
    statements: list[dict[str, Any]], parents: tuple[str, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Every statement as (enclosing blocks, directive, args), in order."""
    for stmt in statements:
        yield (parents, stmt["directive"], tuple(stmt["args"]))
        yield from flat(stmt.get("block", []), (*parents, stmt["directive"]))


def find(result: Rewired, directive: str) -> list[tuple[Any, ...]]:
    """The rewired statements named ``directive``: (enclosing blocks, args)."""
    return [(p, a) for p, d, a in flat(result.statements) if d == directive]


def server(body: str, *, before: str = "", http: str = "") -> str:
    """A whole config: events, and one http block with ``http`` and a server of ``body``."""
    return f"{before}events {{}}\nhttp {{\n{http}\n    server {{\n{body}\n    }}\n}}\n"


@pytest.mark.parametrize("repo", [REFERENCE, TEMPLATE], ids=["reference", "template"])
def test_shipped_configs_are_rewired_and_nothing_else(repo: Path) -> None:
    """The shipped confs: loopback listen and api, pid and logs moved; the rest as written."""
    payload = nginxconf.parse(repo / "nginx" / "nginx.conf", repo)
    result = rewire(payload, listen=LISTEN, api=API, prefix=PREFIX)
    assert find(result, "listen") == [(("http", "server"), (LISTEN,))]
    assert find(result, "proxy_pass") == [(("http", "server", "location"), (f"http://{API}",))]
    assert find(result, "pid") == [((), (str(PREFIX / "nginx.pid"),))]
    assert find(result, "error_log") == [((), ("stderr", "warn"))]
    assert [args[0] for _, args in find(result, "access_log")] == ["/dev/stdout"]
    original = list(flat(payload["config"][0]["parsed"]))
    kept = [s for s in flat(result.statements) if s[1] not in WIRED and s[1] not in TEMP_PATHS]
    assert kept == [s for s in original if s[1] not in WIRED]
    assert result.dropped_includes == ()


@pytest.mark.parametrize("repo", [REFERENCE, TEMPLATE], ids=["reference", "template"])
def test_the_judged_location_and_timeout_survive(repo: Path, tmp_path: Path) -> None:
    """The rewired text is judged as the learner's file was: the same location and timeout."""
    before = nginxconf.judge_file(repo / "nginx" / "nginx.conf", root=repo)
    result = rewire(
        nginxconf.parse(repo / "nginx" / "nginx.conf", repo), listen=LISTEN, api=API, prefix=PREFIX
    )
    (tmp_path / "nginx.conf").write_text(result.text(), "utf-8")
    after = nginxconf.judge_file(tmp_path / "nginx.conf")
    assert (after.location, after.timeout_ms, after.proxies) == (
        before.location,
        before.timeout_ms,
        before.proxies,
    )


def test_user_daemon_and_pid_are_replaced_by_a_private_pid(tmp_path: Path) -> None:
    """The user and daemon lines go (the grader runs nginx itself); pid moves into the prefix."""
    conf = server("listen 80;", before="user www-data;\ndaemon on;\npid /run/nginx.pid;\n")
    result = rewired(conf, tmp_path)
    assert find(result, "user") == [] and find(result, "daemon") == []
    assert find(result, "pid") == [((), (str(PREFIX / "nginx.pid"),))]


def test_a_server_gets_exactly_one_loopback_listen(tmp_path: Path) -> None:
    """Several listens become one; a server without any gets one (nginx would bind 80 or 8000)."""
    conf = (
        "events {}\nhttp {\n  server { listen 80; listen [::]:80; listen 443 ssl http2; }\n"
        "  server { server_name other; }\n}\n"
    )
    result = rewired(conf, tmp_path)
    assert find(result, "listen") == [(("http", "server"), (LISTEN,))] * 2


def test_default_server_stays_on_the_first_server_marked(tmp_path: Path) -> None:
    """One default server per address, the one nginxconf judges: the first marked."""
    conf = (
        "events {}\nhttp {\n  server { listen 80; }\n  server { listen 80 default_server; }\n"
        "  server { listen 8080 default; }\n}\n"
    )
    result = rewired(conf, tmp_path)
    assert [args for _, args in find(result, "listen")] == [
        (LISTEN,),
        (LISTEN, "default_server"),
        (LISTEN,),
    ]


def test_only_the_api_upstream_is_rewired(tmp_path: Path) -> None:
    """api:8000 becomes the API's loopback address, its path kept; other upstreams stay."""
    conf = server(
        "listen 80;\n"
        "location /a/ { proxy_pass http://api:8000/v1/; }\n"
        "location /b { proxy_pass http://backend; }\n"
        "location /c { proxy_pass http://payments:8081; }\n"
        "location /d { proxy_pass http://$target; }\n",
        http="upstream backend { server api:8000 max_fails=0; keepalive 8; }\n",
    )
    result = rewired(conf, tmp_path)
    assert [args[0] for _, args in find(result, "proxy_pass")] == [
        f"http://{API}/v1/",
        "http://backend",
        "http://payments:8081",
        "http://$target",
    ]
    assert find(result, "server")[0] == (("http", "upstream"), (API, "max_fails=0"))


def test_logs_go_where_the_grader_reads_them(tmp_path: Path) -> None:
    """error_log to stderr, access_log to stdout (format kept, off kept), one if none is set."""
    conf = server(
        "listen 80;\nerror_log /var/log/nginx/e.log;\naccess_log off;\n"
        "location / { access_log /var/log/nginx/a.log main buffer=32k; }\n"
    )
    result = rewired(conf, tmp_path)
    assert [args for _, args in find(result, "error_log")] == [("stderr",)]
    assert [args for _, args in find(result, "access_log")] == [
        ("/dev/stdout",),  # added in http: nginx's default file is not the grader's to write
        ("off",),
        ("/dev/stdout", "main", "buffer=32k"),
    ]


def test_temp_paths_move_into_the_prefix_once(tmp_path: Path) -> None:
    """Every module's temp path is set once, in http; the learner's own would duplicate it."""
    conf = server(
        "listen 80;\nproxy_temp_path /var/cache/nginx/proxy;\n",
        http="client_body_temp_path /var/cache/nginx/body 1 2;\n",
    )
    result = rewired(conf, tmp_path, compiled_out=frozenset({"http_uwsgi"}))
    temps = {d: (p, a) for p, d, a in flat(result.statements) if d in TEMP_PATHS}
    assert set(temps) == set(TEMP_PATHS) - {"uwsgi_temp_path"}
    assert temps["proxy_temp_path"] == (("http",), (str(PREFIX / "proxy_temp"),))
    assert len(find(result, "proxy_temp_path")) == 1


def test_includes_are_spliced_or_left_out(tmp_path: Path) -> None:
    """An include of the repo is spliced in; one naming no file of the repo is left out, named."""
    (tmp_path / "nginx" / "conf.d").mkdir(parents=True)
    (tmp_path / "nginx" / "conf.d" / "api.conf").write_text(
        "location / { proxy_pass http://api:8000; }\n", "utf-8"
    )
    conf = server("listen 80;\ninclude conf.d/*.conf;\n", http="include /etc/nginx/mime.types;\n")
    result = rewired(conf, tmp_path)
    assert find(result, "include") == []
    assert find(result, "proxy_pass") == [(("http", "server", "location"), (f"http://{API}",))]
    assert result.dropped_includes == ("/etc/nginx/mime.types",)


def test_an_include_loop_is_refused_as_the_judgement_refuses_it(tmp_path: Path) -> None:
    """Rewiring and judging splice includes the same way: a loop is the same error, same line."""
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "loop.conf").write_text("include loop.conf;\n", "utf-8")
    conf = server("listen 80;\ninclude loop.conf;\n")
    with pytest.raises(nginxconf.NginxConfError) as rewiring:
        rewired(conf, tmp_path)
    with pytest.raises(nginxconf.NginxConfError) as judging:
        nginxconf.judge_file(tmp_path / "nginx" / "nginx.conf", root=tmp_path)
    assert str(rewiring.value) == str(judging.value)
    assert "leads back to a file that includes it" in rewiring.value.message
    assert rewiring.value.file is not None and rewiring.value.file.endswith("loop.conf")


def test_stream_servers_get_ports_of_their_own(tmp_path: Path) -> None:
    """A stream server's listen is a loopback port of its own, not the edge's."""
    conf = server("listen 80;") + "stream {\n  server { listen 5432; proxy_pass db:5432; }\n}\n"
    result = rewired(conf, tmp_path, other_listens=iter(["127.0.0.1:19999"]))
    assert [args for _, args in find(result, "listen")] == [(LISTEN,), ("127.0.0.1:19999",)]


def test_arguments_that_need_quotes_survive_the_round_trip(tmp_path: Path) -> None:
    """crossplane.build quotes what needs it: the text parses back to the same arguments."""
    conf = server(
        'listen 80;\nlocation / { return 503 "<html><body>down</body></html>"; }\n',
        http="log_format t '$remote_addr \"$request\" $status';\n",
    )
    result = rewired(conf, tmp_path)
    (tmp_path / "out.conf").write_text(result.text(), "utf-8")
    again = crossplane.parse(str(tmp_path / "out.conf"), single=True, comments=False)
    assert list(flat(again["config"][0]["parsed"])) == [
        (p, d, tuple(a)) for p, d, a in flat(result.statements)
    ]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx on PATH")
@pytest.mark.parametrize("repo", [REFERENCE, TEMPLATE], ids=["reference", "template"])
def test_nginx_accepts_the_rewired_config(repo: Path, tmp_path: Path) -> None:
    """`nginx -t` accepts the shipped configs once rewired, as the user running the tests."""
    payload = nginxconf.parse(repo / "nginx" / "nginx.conf", repo)
    result = rewire(payload, listen=LISTEN, api=API, prefix=tmp_path)
    (tmp_path / "nginx.conf").write_text(result.text(), "utf-8")
    nginx = find_nginx()
    argv = [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr


def test_no_nginx_on_path_is_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without nginx on PATH the edge is unavailable, saying how to get one."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgeUnavailable) as raised:
        find_nginx()
    assert str(raised.value).startswith(NO_NGINX)
    if any(os.access(f"{d}/nginx", os.X_OK) for d in ("/usr/sbin", "/usr/local/sbin")):
        assert "which is not on PATH: add it" in str(raised.value)


# --- a real nginx, started as the local stack starts it -----------------------------------------

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx on PATH")


class Api(http.server.BaseHTTPRequestHandler):
    """A stand-in API: every POST gets the JSON 504 a fail-fast API answers."""

    def do_POST(self) -> None:
        """Answer 504 with a JSON body."""
        self.send_response(504)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "payments_timeout"}')

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test's output quiet."""


def start_edge(repo: Path, api_url: str, tracker: ProcessTracker) -> LocalEdge:
    """start_local_edge with the tracker's spawn, as LocalStack calls it."""

    def spawn(name: str, argv: Sequence[str], cwd: Path, env: dict[str, str]) -> ManagedProcess:
        return tracker.spawn(name, argv, cwd=cwd, env=env)

    edge = asyncio.run(start_local_edge(LearnerRepo(repo), api_url, spawn))
    assert isinstance(edge, LocalEdge)
    return edge


def gone_soon(path: Path, within_s: float = 3.0) -> bool:
    """Whether ``path`` is removed within ``within_s``."""
    deadline = time.monotonic() + within_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


@needs_nginx
def test_the_edge_passes_the_api_answer_on_and_cleans_up(tmp_path: Path) -> None:
    """The reference's nginx passes the API's answer on, logs it; its prefix goes with it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tracker = ProcessTracker()
    try:
        edge = start_edge(REFERENCE, f"http://127.0.0.1:{server.server_port}", tracker)
        answer = httpx.post(f"{edge.base_url}/checkout", json={"amount_cents": 1}, timeout=5)
        assert (answer.status_code, answer.json()) == (504, {"error": "payments_timeout"})
        assert edge.config.endswith("its listen and upstream rewired to loopback ports")
        assert (edge.prefix / "nginx.conf").is_file()
        # nginx logs the request after the client has its answer, and its shutdown notices
        # follow: wait for the line while nginx runs, instead of reading a tail after its stop.
        logged = edge.process.wait_for_line(lambda line: '"POST /checkout HTTP/1.1" 504' in line, 5)
        assert logged is not None, edge.output_tail()
    finally:
        tracker.close()
        server.shutdown()
    assert gone_soon(edge.prefix), "nginx's temp dir outlived it"


@needs_nginx
def test_a_config_nginx_refuses_is_unavailable_with_its_words(tmp_path: Path) -> None:
    """A directive nginx does not know: EdgeUnavailable with nginx's line, and no temp dir left."""
    repo = tmp_path / "repo"
    (repo / "nginx").mkdir(parents=True)
    conf = server("listen 80;\nlocation / { proxy_pass http://api:8000; made_up_directive on; }")
    (repo / "nginx" / "nginx.conf").write_text(conf, "utf-8")
    before = set(Path(tempfile.gettempdir()).glob("failfast-edge-*"))
    tracker = ProcessTracker()
    try:
        with pytest.raises(EdgeUnavailable) as raised:
            start_edge(repo, "http://127.0.0.1:9", tracker)
    finally:
        tracker.close()
    assert 'unknown directive "made_up_directive"' in str(raised.value)
    assert "m1.nginx-agrees to fail, not this check" in str(raised.value)
    left = set(Path(tempfile.gettempdir()).glob("failfast-edge-*")) - before
    assert all(gone_soon(p) for p in left)


# --- the forms docker-compose users write (issue 22) ---------------------------------------------

CHECKOUT = "location / {{ {body} }}"


def refused(conf: str, tmp_path: Path, files: dict[str, str] | None = None) -> str | None:
    """The local backend's refusal of a config (its message), None if it runs it."""
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, "utf-8")
    result = rewired(conf, tmp_path)
    judged = nginxconf.judge(nginxconf.parse(tmp_path / "nginx" / "nginx.conf", tmp_path))
    at = None if judged.proxy_pass is None else (judged.proxy_pass.file, judged.proxy_pass.line)
    found = refusal(
        result.statements,
        at,
        API,
        result.unresolved,
        root=tmp_path,
        config_dir=tmp_path / "nginx",
    )
    return None if found is None else str(found.error(tmp_path))


RUNNABLE = {
    "host": ("", "proxy_pass http://api:8000;"),
    "uri-part": ("", "proxy_pass http://api:8000/;"),
    "uri-and-variable": ("", "proxy_pass http://api:8000$request_uri;"),
    "upstream": ("upstream backend { server api:8000 max_fails=0; }", "proxy_pass http://backend;"),
    "upstream-named-api": ("upstream api { server api:8000; }", "proxy_pass http://api/;"),
    "set": ("", "resolver 127.0.0.11 valid=10s; set $api http://api:8000; proxy_pass $api;"),
    "set-authority": ("resolver 127.0.0.11;", "set $a api:8000; proxy_pass http://$a$uri;"),
    "map": ("map $host $api { default http://api:8000; }", "proxy_pass $api/checkout;"),
    "map-to-upstream": (
        "upstream u { server api:8000; } map $uri $api { ~^/x http://u; default http://u; }",
        "proxy_pass $api;",
    ),
    "nested-variables": ("", "set $h http://api:8000; set $api $h/; proxy_pass $api;"),
}


@pytest.mark.parametrize("form", list(RUNNABLE))
def test_compose_forms_reach_the_api_and_run(form: str, tmp_path: Path) -> None:
    """Each form reaches the API's loopback address, with no resolver left, and nginx -t agrees."""
    http, body = RUNNABLE[form]
    conf = server("listen 80;\n" + CHECKOUT.format(body=body), http=http)
    assert refused(conf, tmp_path) is None
    payload = nginxconf.parse(tmp_path / "nginx" / "nginx.conf", tmp_path)
    result = rewire(payload, listen=LISTEN, api=API, prefix=tmp_path)
    assert "api:8000" not in result.text() and "resolver" not in result.text()
    assert result.resolvers == body.count("resolver ") + http.count("resolver ")
    assert API in result.text()
    if shutil.which("nginx") is not None:
        (tmp_path / "out.conf").write_text(result.text(), "utf-8")
        argv = [find_nginx(), "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "out.conf")]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, done.stderr


def test_resolving_parameters_of_the_api_server_go(tmp_path: Path) -> None:
    """An upstream's `server api:8000 resolve` (nginx 1.27.3+) becomes an address: no resolving."""
    conf = server(
        "listen 80;\nlocation / { proxy_pass http://b; }",
        http="upstream b { zone b 64k; server api:8000 resolve max_fails=0; }",
    )
    assert find(rewired(conf, tmp_path), "server")[0] == (
        ("http", "upstream"),
        (API, "max_fails=0"),
    )


REFUSED = {
    "unix-socket": ("", "proxy_pass http://unix:/run/api.sock;", "unix socket", 6),
    "another-host": ("", "set $u http://checkout:9000; proxy_pass $u;", "checkout:9000", 6),
    "pieces": ("", "set $h api; proxy_pass http://$h:8000;", "built from pieces", 6),
    "api-without-its-port": ("", "proxy_pass http://api/;", "port 80 (none given)", 6),
    "api-on-another-port": ("", "set $a http://api:80; proxy_pass $a;", "port 80, but", 6),
    "unknown-host": ("", "proxy_pass http://$http_x_backend;", "$http_x_backend", 6),
    "other-upstream-server": (
        "upstream b {\nserver api:8000;\nserver api2:8000 backup;\n}",
        "proxy_pass http://b;",
        "api2",
        5,
    ),
    "upstream-server-elsewhere": (
        "upstream b {\nserver api:8000;\nserver 10.0.0.5:8000;\n}",
        "proxy_pass http://b;",
        "upstream b has `server 10.0.0.5:8000` (nginx/nginx.conf:5)",
        9,
    ),
    "startup-host": (
        "",
        "proxy_pass http://api:8000; } location /p { proxy_pass http://pay:1;",
        "pay",
        6,
    ),
}


@pytest.mark.parametrize("form", list(REFUSED))
def test_forms_it_cannot_run_are_named_with_their_line(form: str, tmp_path: Path) -> None:
    """A form the local backend cannot run: refused with its file:line and the reason."""
    http, body, words, line = REFUSED[form]
    message = refused(server("listen 80;\n" + CHECKOUT.format(body=body), http=http), tmp_path)
    assert message is not None and words in message, message
    assert message.startswith(f"nginx/nginx.conf:{line}: `"), message


def test_includes_inside_the_repo_run_and_outside_are_refused(tmp_path: Path) -> None:
    """An include of the repo is followed; one outside the repo is refused with its line."""
    files = {"nginx/conf.d/api.conf": "location / { set $api http://api:8000; proxy_pass $api; }"}
    conf = server("listen 80;\ninclude conf.d/*.conf;", http="include /etc/nginx/mime.types;")
    assert refused(conf, tmp_path, files) is None
    outside = server(
        "listen 80;\ninclude /etc/nginx/conf.d/*.conf;\nlocation / { proxy_pass http://api:8000; }"
    )
    message = refused(outside, tmp_path / "b")
    assert message is not None
    assert message.startswith(
        "nginx/nginx.conf:6: `include /etc/nginx/conf.d/*.conf`: it names a file outside"
    )


def test_map_entries_are_values_not_directives(tmp_path: Path) -> None:
    """A map's entries keep their keys, however they look; only an api value is rewired."""
    conf = server(
        "listen 80;\nlocation / { proxy_pass $api; }",
        http="map $uri $api { resolver http://api:8000; error_log x; default http://api:8000; }",
    )
    entries = [(d, a) for p, d, a in flat(rewired(conf, tmp_path).statements) if p[-1:] == ("map",)]
    assert entries == [
        ("resolver", (f"http://{API}",)),
        ("error_log", ("x",)),
        ("default", (f"http://{API}",)),
    ]
