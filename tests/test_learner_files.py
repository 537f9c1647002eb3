"""Unit tests of reading a learner's files: bounded, regular files only, the learner's fault named.

Every case is a bad input a learner can write (or a hostile repo can hold): each ends in one
clear problem that names the file and what to change, in bounded time, never in an exception
other than the grader's own. The end-to-end versions, through the CLI, are in
tests/e2e/test_bad_files.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from checks.m1_budget_table import nginx_agrees
from checks.m1_k6 import k6_thresholds
from grader.engine.context import Context
from grader.errors import BudgetsError, CheckFailed, ManifestError
from grader.learner import budgets, learnerfile, nginxconf, yamlfile
from grader.learner.learnerfile import LearnerFileError
from grader.learner.nginxconf import NginxConfError
from grader.learner.repo import LearnerRepo
from tests.mutants import REFERENCE

T = TypeVar("T")

TABLE = (REFERENCE / "budgets.yaml").read_text("utf-8")
NGINX = (REFERENCE / "nginx" / "nginx.conf").read_text("utf-8")
# A 600-byte "billion laughs": nine levels of nine aliases, 9**9 = 387 million strings expanded.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)


def within(limit_s: float, call: Callable[[], T]) -> T:
    """``call()``'s result, failing the test (not hanging it) if it takes over ``limit_s``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # handed to the test thread below
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit_s)
    if worker.is_alive():
        pytest.fail(f"still reading after {limit_s:g} s: the read blocks")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def table(tmp_path: Path, text: str | bytes) -> Path:
    """A repo holding only budgets.yaml with ``text``."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    (tmp_path / "budgets.yaml").write_bytes(data)
    return tmp_path


def problems(repo: Path) -> list[str]:
    """budgets.yaml's problems as the report shows them, read within 5 s."""
    return [str(p) for p in within(5, lambda: budgets.load(repo)).problems]


def one_problem(repo: Path) -> str:
    """The one problem of budgets.yaml."""
    found = problems(repo)
    assert len(found) == 1, found
    return found[0]


# --- the reader: regular files inside the repo, bounded -------------------------------------------


def test_reads_a_regular_file_and_a_symlink_inside_the_repo(tmp_path: Path) -> None:
    """A plain file, and a symlink to a file elsewhere in the repo, are read as they are."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "real.yaml").write_text("a: 1\n")
    (tmp_path / "budgets.yaml").symlink_to("config/real.yaml")
    assert learnerfile.read_text(tmp_path, "budgets.yaml", 100) == "a: 1\n"
    assert learnerfile.read_bytes(tmp_path, "config/real.yaml", 5) == b"a: 1\n"


def test_missing_file_is_marked_missing(tmp_path: Path) -> None:
    """No such file: missing, with what to create."""
    with pytest.raises(LearnerFileError) as error:
        learnerfile.read_bytes(tmp_path, "budgets.yaml", 100)
    assert error.value.missing
    assert error.value.message == "budgets.yaml was not found: create budgets.yaml"


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named budgets.yaml used to block the grader forever; it is refused at once."""
    os.mkfifo(tmp_path / "budgets.yaml")
    assert one_problem(tmp_path) == (
        "budgets.yaml: is a named pipe (FIFO), not a regular file: replace it with a regular file"
    )


def test_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    """budgets.yaml -> /dev/zero was a MemoryError ("the check crashed"); it leads outside."""
    (tmp_path / "budgets.yaml").symlink_to("/dev/zero")
    message = one_problem(tmp_path)
    assert message.startswith("budgets.yaml: leads outside your repository, to /dev/zero")
    assert "put the file itself there" in message


def test_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    """A link to a file outside the repo, even a valid table, is not read."""
    repo, outside = tmp_path / "repo", tmp_path / "outside.yaml"
    repo.mkdir()
    outside.write_text(TABLE)
    (repo / "budgets.yaml").symlink_to(outside)
    assert f"leads outside your repository, to {outside}" in one_problem(repo)


def test_directory_symlinked_out_of_the_repo_is_named(tmp_path: Path) -> None:
    """nginx/ linked to /etc: the file is refused, and the message names the link."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "nginx").symlink_to("/etc")
    with pytest.raises(LearnerFileError, match=r"through the symlink nginx\)"):
        learnerfile.read_bytes(repo, "nginx/hostname", 1000)


def test_dangling_and_looping_symlinks(tmp_path: Path) -> None:
    """A link to nothing, and a link to itself, each say so."""
    (tmp_path / "budgets.yaml").symlink_to("budgets.yml")
    assert one_problem(tmp_path) == (
        "budgets.yaml: is a symlink to budgets.yml, which does not exist: "
        "replace it with the file itself"
    )
    (tmp_path / "budgets.yaml").unlink()
    (tmp_path / "budgets.yaml").symlink_to("budgets.yaml")
    assert "is a symlink that leads back to itself" in one_problem(tmp_path)


def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory named budgets.yaml is a problem saying to put the file there instead."""
    (tmp_path / "budgets.yaml").mkdir()
    assert one_problem(tmp_path) == (
        "budgets.yaml: is a directory, not a regular file: remove the directory and put the "
        "file in its place"
    )


def test_socket_is_refused(tmp_path: Path) -> None:
    """A socket is not a file to read either."""
    path = tmp_path / "budgets.yaml"
    if len(str(path)) > 100:
        pytest.skip("the temporary path is too long for a unix socket")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        assert "is a socket, not a regular file" in one_problem(tmp_path)
    finally:
        server.close()


def test_huge_file_is_refused_unread(tmp_path: Path) -> None:
    """A 50 MB budgets.yaml ran past two minutes; it is refused by its size, in no time."""
    with (tmp_path / "budgets.yaml").open("wb") as file:
        file.truncate(50 * 1000 * 1000)  # sparse: costs no disk
    started = time.monotonic()
    assert one_problem(tmp_path) == (
        "budgets.yaml: is 47.7 MiB, larger than the grader's limit of 256 KiB: "
        "make it smaller than 256 KiB"
    )
    assert time.monotonic() - started < 1


def test_unreadable_file_says_chmod(tmp_path: Path) -> None:
    """A file without read permission: how to make it readable."""
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (tmp_path / "budgets.yaml").write_text(TABLE)
    (tmp_path / "budgets.yaml").chmod(0)
    assert "chmod a+r budgets.yaml" in one_problem(tmp_path)


def test_invalid_utf8_names_line_and_column(tmp_path: Path) -> None:
    """Latin-1 bytes are not UTF-8: the line and column, and to save it as UTF-8."""
    repo = table(tmp_path, TABLE.encode() + b"# caf\xe9\n")
    line = TABLE.count("\n") + 1
    assert one_problem(repo) == (
        f"budgets.yaml: is not UTF-8 text (byte 0xe9 at line {line}, column 6): save it as UTF-8"
    )


def test_utf16_file_is_not_utf8(tmp_path: Path) -> None:
    """A file saved as UTF-16 (Windows' "Unicode") is said to be not UTF-8."""
    assert "is not UTF-8 text (byte 0xff at line 1" in one_problem(
        table(tmp_path, TABLE.encode("utf-16"))
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (YAML allows one; Notepad writes it) changes nothing."""
    assert problems(table(tmp_path, b"\xef\xbb\xbf" + TABLE.encode())) == []


# --- YAML: aliases, sizes, shapes -----------------------------------------------------------------


def test_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """The 600-byte billion laughs took 68 s and 3.1 GB; its first alias is refused."""
    repo = table(tmp_path, ALIAS_BOMB)
    started = time.monotonic()
    assert one_problem(repo) == (
        "budgets.yaml:2: uses the YAML alias *a: write the value out instead (the grader does "
        "not expand aliases in contract files)"
    )
    assert time.monotonic() - started < 1


def test_merge_key_alias_is_refused(tmp_path: Path) -> None:
    """`<<: *base` is an alias too: it is refused with its line, not expanded."""
    text = "base: &base {timeout_s: 10}\nlayers:\n  nginx:\n    <<: *base\n"
    assert one_problem(table(tmp_path, text)).startswith("budgets.yaml:4: uses the YAML alias")


def test_anchor_without_alias_is_harmless(tmp_path: Path) -> None:
    """An anchor nothing refers to is valid YAML and changes nothing."""
    text = TABLE.replace("nginx:    {timeout_s: 10}", "nginx: &edge {timeout_s: 10}")
    assert problems(table(tmp_path, text)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "budgets.yaml: is empty: it needs `layers:` (see the README)"),
        ("# only a comment\n\n", "budgets.yaml: is empty: it needs `layers:` (see the README)"),
        (
            "- 10\n- 3\n",
            "budgets.yaml:1: must be a mapping of keys to values (`key: value` lines), not a list",
        ),
        (
            "nginx 10, api 3\n",
            "budgets.yaml:1: must be a mapping of keys to values (`key: value` lines), not the "
            'single value "nginx 10, api 3"',
        ),
    ],
    ids=["empty", "comments-only", "list", "scalar"],
)
def test_file_that_is_not_a_table(tmp_path: Path, text: str, expected: str) -> None:
    """An empty file, a list or a scalar is one problem saying what the file must be."""
    assert one_problem(table(tmp_path, text)) == expected


def test_two_documents_are_refused(tmp_path: Path) -> None:
    """A second `---` document is one problem, on the line of its `---`."""
    line = TABLE.count("\n") + 1
    assert one_problem(table(tmp_path, TABLE + "---\nlayers: {}\n")) == (
        f"budgets.yaml:{line}: holds more than one YAML document (a second `---`): keep only one"
    )


def test_too_many_values_and_too_deep(tmp_path: Path) -> None:
    """A flood of values, or nesting hundreds deep, is refused before any schema runs."""
    flood = TABLE + "x: [" + ",".join(["1"] * 5000) + "]\n"
    assert "holds more than 1000 values" in one_problem(table(tmp_path, flood))
    deep = TABLE + "x: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert "nests values more than 20 levels deep" in one_problem(table(tmp_path, deep))


def test_control_character_names_its_line(tmp_path: Path) -> None:
    """A NUL byte is not YAML: its line, and to remove it."""
    assert one_problem(table(tmp_path, "layers:\n  nginx: \x00\n")) == (
        "budgets.yaml:2: is not valid YAML: it contains the control character #x0000, which "
        "YAML does not allow; remove it"
    )


def test_odd_values_and_keys_do_not_crash(tmp_path: Path) -> None:
    """A date, bytes and non-string keys are shown in the message, not a TypeError."""
    text = TABLE.replace("timeout_s: 3}", "timeout_s: 2001-12-14}") + "1: one\n2020-01-01: x\n"
    found = problems(table(tmp_path, text))
    assert 'layers.api.timeout_s must be a number of seconds, not "2001-12-14"' in found[0]
    assert "unexpected key 1, datetime.date(2020, 1, 1) at the top level" in found[1]


# --- YAML: the learner's numbers ------------------------------------------------------------------


API = "layers.api.timeout_s"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("timeout_s: 3}", "timeout_s: .nan}", f"{API} must be a finite number, not .nan"),
        ("timeout_s: 3}", "timeout_s: .inf}", f"{API} must be at most 3600, not .inf"),
        ("timeout_s: 3}", "timeout_s: 1.0e+20}", f"{API} must be at most 3600, not 1e+20"),
        ("base_delay_s: 0.1", "base_delay_s: -.inf", "base_delay_s must be at least 0, not -.inf"),
        ("max_delay_s: 1.0", "max_delay_s: .NaN", "max_delay_s must be a finite number, not .nan"),
        ("max_attempts: 3", "max_attempts: 2000", "max_attempts must be at most 100, not 2000"),
        ("ratio: 0.1", "ratio: 50", "retry_budget.ratio must be at most 1, not 50"),
        ("burst: 10", "burst: 1000000000", "burst must be at most 100, not 1000000000"),
    ],
    ids=["nan", "inf", "1e20", "minus-inf", "NaN", "max-attempts-2000", "ratio-50", "burst-1e9"],
)
def test_absurd_numbers_are_problems_with_their_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    """Non-finite and absurd numbers are the learner's problem, on their line."""
    text = TABLE.replace(old, new)
    line = text[: text.index(new)].count("\n") + 1
    found = one_problem(table(tmp_path, text))
    assert found.startswith(f"budgets.yaml:{line}: ") and found.endswith(expected)


def test_nan_stops_live_grading_with_the_line(tmp_path: Path) -> None:
    """A NaN budget crashed every milestone-2 check; now the live checks cannot start on it."""
    repo = table(tmp_path, TABLE.replace("timeout_s: 3}", "timeout_s: .nan}"))
    with pytest.raises(BudgetsError, match=r"budgets\.yaml:9: layers\.api\.timeout_s must be a"):
        budgets.for_live_checks(repo)


def test_worst_case_never_overflows() -> None:
    """Waits past 2**1024 are the cap, and the sum is computed without a loop per attempt."""
    retries = budgets.Retries(2000, 0.1, 1.0, "full")
    assert retries.max_delay_before(2000) == 1.0
    assert budgets.Retries(2000, 0.1, 1.0, "decorrelated").max_delay_before(1500) == 1.0
    assert budgets.Retries(2000, 0.0, 1.0, "full").max_delay_before(2000) == 0.0
    table_ = budgets.Budgets(budgets.COURSE.layers, budgets.Retries(10**12, 0.1, 1.0, "full"))
    started = time.monotonic()
    assert table_.worst_case_s() == pytest.approx(
        10**12 * 2.5 + 0.1 + 0.2 + 0.4 + 0.8 + (10**12 - 5)
    )
    assert time.monotonic() - started < 0.1


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys silently: a problem naming both lines."""
    text = TABLE.replace(
        "  api:      {timeout_s: 3}\n", "  api:      {timeout_s: 3}\n  api: {timeout_s: 30}\n"
    )
    line = text.index("api: {timeout_s: 30}")
    second = text[:line].count("\n") + 1
    found = problems(table(tmp_path, text))
    assert found == [
        f"budgets.yaml:{second}: layers.api is given twice, on lines {second - 1} and {second}: "
        f"YAML keeps only the last one; delete the other"
    ]  # fmt: skip


def test_value_problem_points_at_the_key_yaml_kept(tmp_path: Path) -> None:
    """With a duplicate, a problem of the value is located on the last key, whose value counts."""
    text = TABLE.replace("retry_budget:", "retry_budget:\n  burst: 3") + "  burst: -1\n"
    found = problems(table(tmp_path, text))
    last = text.count("\n")
    assert f"budgets.yaml:{last}: retry_budget.burst must be at least 1, not -1" in found
    assert any("retry_budget.burst is given twice" in p for p in found)


# --- failfast.yaml --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: os.mkfifo(p), "failfast.yaml: is a named pipe (FIFO)"),
        (lambda p: p.symlink_to("/etc/hostname"), "failfast.yaml: leads outside your repository"),
        (lambda p: p.symlink_to("nowhere.yaml"), "failfast.yaml: is a symlink to nowhere.yaml"),
        (
            lambda p: p.write_text("startup_timeout_s: .nan\n"),
            "failfast.yaml:1: startup_timeout_s must be a finite number, not .nan",
        ),
        (lambda p: p.write_text(ALIAS_BOMB), "failfast.yaml:2: uses the YAML alias *a"),
        (lambda p: p.write_text("- uvicorn\n"), "failfast.yaml:1: must be a mapping of keys"),
    ],
    ids=["fifo", "outside", "dangling", "nan", "alias-bomb", "list"],
)
def test_manifest_problems_are_manifest_errors(
    tmp_path: Path, setup: Callable[[Path], None], expected: str
) -> None:
    """Whatever failfast.yaml is, it is exit 2 with the file, the problem and what to do."""
    setup(tmp_path / "failfast.yaml")
    with pytest.raises(ManifestError) as error:
        within(5, LearnerRepo.open(tmp_path).manifest)
    assert expected in error.value.message
    assert "delete it to use the default command" in error.value.message
    assert error.value.location is not None and error.value.location.path == "failfast.yaml"


def test_empty_manifest_means_the_defaults(tmp_path: Path) -> None:
    """An empty failfast.yaml is still the contract's defaults, as before."""
    (tmp_path / "failfast.yaml").write_text("# defaults\n")
    assert LearnerRepo.open(tmp_path).manifest().startup_timeout_s == 20.0


# --- nginx.conf and its includes ------------------------------------------------------------------


def nginx_repo(tmp_path: Path, conf: str | bytes = NGINX) -> Path:
    """A repo with the reference's nginx.conf (or ``conf``); returns the repo."""
    (tmp_path / "nginx").mkdir(exist_ok=True)
    data = conf.encode("utf-8") if isinstance(conf, str) else conf
    (tmp_path / "nginx" / "nginx.conf").write_bytes(data)
    return tmp_path


def including(pattern: str) -> str:
    """The reference's nginx.conf with ``include pattern;`` first in its http block (line 11)."""
    return NGINX.replace("http {", f"http {{\n    include {pattern};", 1)


def judge(repo: Path) -> nginxconf.Judged:
    """Judge the repo's nginx.conf within 5 s, files read inside the repo."""
    return within(5, lambda: nginxconf.judge_file(repo / "nginx" / "nginx.conf", root=repo))


def include_line() -> int:
    """The line ``including`` puts its include on."""
    return including("x")[: including("x").index("include x;")].count("\n") + 1


def test_include_of_a_fifo_names_it_and_the_include(tmp_path: Path) -> None:
    """A FIFO among the included files is refused, with the include that named it."""
    repo = nginx_repo(tmp_path, including("conf.d/*.conf"))
    (repo / "nginx" / "conf.d").mkdir()
    os.mkfifo(repo / "nginx" / "conf.d" / "checkout.conf")
    with pytest.raises(LearnerFileError) as error:
        judge(repo)
    assert error.value.message == (
        f"nginx/conf.d/checkout.conf (included at nginx/nginx.conf:{include_line()}) is a named "
        f"pipe (FIFO), not a regular file: replace it with a regular file"
    )


def test_include_of_dev_zero_is_refused(tmp_path: Path) -> None:
    """An included symlink to /dev/zero leads outside the repo: refused, not read."""
    repo = nginx_repo(tmp_path, including("extra.conf"))
    (repo / "nginx" / "extra.conf").symlink_to("/dev/zero")
    with pytest.raises(LearnerFileError, match="leads outside your repository, to /dev/zero"):
        judge(repo)


def test_include_outside_the_repo_is_not_read(tmp_path: Path) -> None:
    """An include that names a path outside the repo (the image's own) is left unresolved."""
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "outside.conf"
    outside.write_text("this is { not nginx")  # read, it would be a syntax error
    judged = judge(nginx_repo(repo, including(str(outside))))
    assert [i.pattern for i in judged.unresolved_includes] == [str(outside)]
    assert judged.timeout_s == 10.0


def test_include_without_a_file_is_nginx_s_error(tmp_path: Path) -> None:
    """`include;` is nginx's own error with its line, not a crossplane IndexError."""
    with pytest.raises(NginxConfError, match='invalid number of arguments in "include"'):
        judge(nginx_repo(tmp_path, NGINX.replace("http {", "http {\ninclude;", 1)))


def test_too_many_or_too_big_includes(tmp_path: Path) -> None:
    """Sixty-five included files, or more than 1 MiB together, stop at the include."""
    repo = nginx_repo(tmp_path, including("conf.d/*.conf"))
    (repo / "nginx" / "conf.d").mkdir()
    for n in range(learnerfile.NGINX_CONF_MAX_FILES + 1):
        (repo / "nginx" / "conf.d" / f"{n:03}.conf").write_text("# empty\n")
    with pytest.raises(NginxConfError, match="includes more than 64 files") as error:
        judge(repo)
    assert error.value.line == include_line()
    shutil.rmtree(repo / "nginx" / "conf.d")
    (repo / "nginx" / "conf.d").mkdir()
    for n in range(2):
        (repo / "nginx" / "conf.d" / f"{n}.conf").write_text("#" * 600_000 + "\n")
    with pytest.raises(NginxConfError, match="more than 1 MiB together"):
        judge(repo)


def test_nginx_file_too_big_is_refused(tmp_path: Path) -> None:
    """A 2 MiB nginx.conf is refused by its size, naming the file."""
    with pytest.raises(LearnerFileError, match=r"nginx/nginx.conf is 2\.0 MiB, larger than"):
        judge(nginx_repo(tmp_path, NGINX + "#" * 2 * 1024 * 1024))


def test_nginx_bom_is_what_nginx_refuses(tmp_path: Path) -> None:
    """A BOM: nginx reads it as part of the first directive: line 1, and to save without it."""
    with pytest.raises(NginxConfError, match="byte order mark") as error:
        judge(nginx_repo(tmp_path, b"\xef\xbb\xbf" + NGINX.encode()))
    assert error.value.line == 1


def test_nginx_nesting_too_deep_is_an_nginx_error(tmp_path: Path) -> None:
    """Thousands of nested blocks are a config error, not a RecursionError."""
    deep = "events {}\nhttp {\nserver {\n" + "location / {\n" * 5000 + "}\n" * 5000 + "}\n}\n"
    with pytest.raises(NginxConfError, match="nested hundreds of levels deep"):
        judge(nginx_repo(tmp_path, deep))


# --- milestone 1's checks on such files -----------------------------------------------------------


def context(repo: Path) -> Context:
    """A static check's context on ``repo``, which holds the reference's budgets.yaml."""
    shutil.copy(REFERENCE / "budgets.yaml", repo / "budgets.yaml")
    return Context(LearnerRepo.open(repo), budgets.COURSE, 0)


def test_nginx_agrees_fails_on_a_fifo_config(tmp_path: Path) -> None:
    """m1.nginx-agrees FAILs (never hangs, never ERRORs) on a FIFO nginx.conf, with the fix."""
    (tmp_path / "nginx").mkdir()
    os.mkfifo(tmp_path / "nginx" / "nginx.conf")
    with pytest.raises(CheckFailed) as failed:
        within(5, lambda: nginx_agrees(context(tmp_path)))
    evidence = failed.value.evidence
    assert evidence.summary == "nginx/nginx.conf cannot be read as it is"
    assert "is a named pipe (FIFO)" in evidence.measured
    assert evidence.hint == "Replace it with a regular file."
    assert evidence.location is not None and evidence.location.path == "nginx/nginx.conf"


def test_nginx_agrees_fails_on_an_unreadable_include(tmp_path: Path) -> None:
    """An included directory is the check's FAIL, located on the included file."""
    repo = nginx_repo(tmp_path, including("extra.conf"))
    (repo / "nginx" / "extra.conf").mkdir()
    with pytest.raises(CheckFailed) as failed:
        within(5, lambda: nginx_agrees(context(repo)))
    assert "nginx/extra.conf (included at nginx/nginx.conf:" in failed.value.evidence.measured
    assert failed.value.evidence.location is not None
    assert failed.value.evidence.location.path == "nginx/extra.conf"


def test_nginx_agrees_still_says_missing(tmp_path: Path) -> None:
    """No nginx.conf at all is still "was not found"."""
    with pytest.raises(CheckFailed, match=r"nginx/nginx\.conf was not found"):
        nginx_agrees(context(tmp_path))


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: os.mkfifo(p), "is a named pipe (FIFO)"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.symlink_to("/dev/urandom"), "leads outside your repository"),
        (lambda p: p.write_bytes(b"//" * (600 * 1024)), "is 1.2 MiB, larger than"),
    ],
    ids=["fifo", "directory", "dev-urandom", "too-big"],
)
def test_k6_thresholds_fails_before_k6_reads_a_bad_script(
    tmp_path: Path, setup: Callable[[Path], None], expected: str
) -> None:
    """The learner's k6 script is checked before `k6 inspect` is handed it: a FAIL, at once."""
    (tmp_path / "loadtest").mkdir()
    setup(tmp_path / "loadtest" / "checkout.js")
    ctx = context(tmp_path)
    started = time.monotonic()
    with pytest.raises(CheckFailed) as failed:
        within(5, lambda: asyncio.run(k6_thresholds(ctx)))
    assert failed.value.evidence.summary == "loadtest/checkout.js cannot be read as it is"
    assert expected in failed.value.evidence.measured
    assert time.monotonic() - started < 2  # k6 was never started on it


# --- the bounds: the worst input each allows is cheap ---------------------------------------------


def measured(call: Callable[[], T], *, memory: bool) -> tuple[T, float, int]:
    """``call()``'s result, its seconds, and (with ``memory``) the peak bytes Python allocated.

    tracemalloc slows the call several times over: the time limits below allow for it.
    """
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1] if memory else 0
        return result, time.perf_counter() - started, peak
    finally:
        if memory:
            tracemalloc.stop()


def test_worst_allowed_yaml_is_cheap(tmp_path: Path) -> None:
    """A budgets.yaml of 256 KiB, the slowest shape (blank lines), reads in well under 5 s.

    Measured: 0.15-0.3 s, and 1-3 MiB more RSS, without tracemalloc; the limits here are
    generous so that a busy CI machine never fails them, and still far below the 68 s and
    3.1 GB of the alias bomb this replaces.
    """
    padding = learnerfile.CONTRACT_MAX_BYTES - len(TABLE.encode())
    repo = table(tmp_path, TABLE + "\n" * padding)
    assert (repo / "budgets.yaml").stat().st_size == learnerfile.CONTRACT_MAX_BYTES
    loaded, seconds, peak = measured(lambda: budgets.load(repo), memory=True)
    assert loaded.problems == ()
    assert seconds < 5 and peak < 32 * 1024 * 1024


def test_worst_allowed_nginx_conf_is_bounded(tmp_path: Path) -> None:
    """1 MiB of real directives judges in seconds; one byte more is refused unread.

    Measured: 0.4 s without tracemalloc (and 2.2 s, +190 MiB RSS, for the worst 1 MiB: half a
    million one-letter directives, left out of this suite for its time).
    """
    head, tail = NGINX.split("http {", 1)
    line = "    proxy_set_header X-Padding on;\n"
    count = (learnerfile.NGINX_CONF_MAX_BYTES - len(NGINX) - 7) // len(line)
    repo = nginx_repo(tmp_path, head + "http {\n" + line * count + tail)
    assert (repo / "nginx" / "nginx.conf").stat().st_size <= learnerfile.NGINX_CONF_MAX_BYTES
    judged, seconds, _ = measured(lambda: judge(repo), memory=False)
    assert judged.timeout_s == 10.0
    assert seconds < 10
    with (repo / "nginx" / "nginx.conf").open("ab") as file:
        file.write(b"#" * (learnerfile.NGINX_CONF_MAX_BYTES + 1))
    with pytest.raises(LearnerFileError, match="larger than the grader's limit of 1 MiB"):
        judge(repo)


def test_every_bound_is_stated() -> None:
    """The bounds are named constants the README can quote."""
    assert learnerfile.CONTRACT_MAX_BYTES == 256 * 1024
    assert learnerfile.NGINX_CONF_MAX_BYTES == learnerfile.K6_SCRIPT_MAX_BYTES == 1024 * 1024
    assert (yamlfile.MAX_NODES, yamlfile.MAX_DEPTH) == (1000, 20)
