"""The docker backend's pure logic: the build context, the build's log, the CMD suggested.

The context tests compare :func:`measure` with the tar the docker SDK itself makes for a build
(``docker.utils.build.tar`` with the .dockerignore read as ``APIClient.build`` reads it): what is
measured is what would be sent. No engine is involved.
"""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest
from docker.utils.build import tar

from grader.backends.docker.build import _BuildLog, sets_command, suggested_cmd
from grader.backends.docker.context import (
    MB,
    check_size,
    dockerignore_patterns,
    measure,
)
from grader.errors import ImageBuildError
from grader.learner.learnerfile import LearnerFileError
from grader.lines import decimal_size

DOCKERIGNORE = """\
# comments and blank lines are not patterns

*.log
data/
!data/keep.txt
**/__pycache__
secrets/*.pem
{spaced}
.dockerignore
Dockerfile
""".format(spaced="  build/tmp  ")  # surrounding spaces are stripped


def _tree(root: Path) -> Path:
    """A repo with files .dockerignore keeps, drops, and takes back with `!`."""
    files = {
        "Dockerfile": 50,
        "app/main.py": 1000,
        "app/__pycache__/main.cpython-311.pyc": 700,
        "app/deep/__pycache__/x.pyc": 300,
        "server.log": 5000,
        "app/debug.log": 800,  # `*.log` matches at the root only, as Docker's patterns do
        "data/big.bin": 90_000,
        "data/keep.txt": 40,
        "secrets/key.pem": 60,
        "secrets/readme.md": 20,
        "build/tmp": 400,
        "build/out.txt": 30,
        ".git/objects/pack": 2000,
    }
    for relative, size in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    (root / ".dockerignore").write_text(DOCKERIGNORE)
    return root


def _sent(root: Path) -> dict[str, int]:
    """Regular file -> bytes, of the tar the docker SDK sends for a build of ``root``."""
    archive = tar(str(root), exclude=dockerignore_patterns(root))  # as APIClient.build does
    with archive, tarfile.open(fileobj=archive) as packed:
        return {m.name: m.size for m in packed.getmembers() if m.isreg()}


def test_dockerignore_is_read_as_the_sdk_reads_it(tmp_path: Path) -> None:
    """Comments and blank lines dropped, lines stripped; no file means no pattern."""
    assert dockerignore_patterns(tmp_path) == []
    (tmp_path / ".dockerignore").write_text(DOCKERIGNORE)
    patterns = dockerignore_patterns(tmp_path)
    assert patterns[:3] == ["*.log", "data/", "!data/keep.txt"]
    assert "build/tmp" in patterns and not any(p.startswith("#") or not p for p in patterns)


def test_a_dockerignore_that_is_no_file_is_refused_not_read(tmp_path: Path) -> None:
    """A FIFO would block the SDK's own read forever: refused, naming it, without reading."""
    os.mkfifo(tmp_path / ".dockerignore")
    with pytest.raises(LearnerFileError, match=r"^\.dockerignore "):
        dockerignore_patterns(tmp_path)


def test_measure_counts_exactly_what_the_sdk_would_send(tmp_path: Path) -> None:
    """Every file the SDK's tar holds, and only those, with their sizes."""
    root = _tree(tmp_path)
    sent = _sent(root)
    size = measure(root)
    assert size.total == sum(sent.values()) and size.files == len(sent)
    assert {f.path for f in size.biggest} <= set(sent)
    # The patterns at work: dropped, kept, taken back; Dockerfile and .dockerignore always sent.
    assert "data/keep.txt" in sent and "data/big.bin" not in sent
    assert "server.log" not in sent and "app/debug.log" in sent
    assert not any("__pycache__" in path for path in sent)
    assert "secrets/key.pem" not in sent and "secrets/readme.md" in sent
    assert "build/tmp" not in sent and {"Dockerfile", ".dockerignore"} <= set(sent)


def test_without_dockerignore_everything_is_counted(tmp_path: Path) -> None:
    """No .dockerignore: .git and all, as `docker build` sends it."""
    root = _tree(tmp_path)
    (root / ".dockerignore").unlink()
    assert measure(root).total == sum(_sent(root).values())
    assert ".git/objects/pack" in _sent(root)


def test_links_count_as_tar_packs_them(tmp_path: Path) -> None:
    """A symlink carries no bytes; a hard link to a packed file is packed as a link."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a.bin").write_bytes(b"a" * 10_000)
    os.link(tmp_path / "a.bin", tmp_path / "b.bin")
    (tmp_path / "c.bin").symlink_to("a.bin")
    (tmp_path / "outside").symlink_to("/etc")
    size = measure(tmp_path)
    assert size.total == sum(_sent(tmp_path).values()) == 10_000 + len("FROM scratch\n")


def test_a_sparse_file_counts_in_full_without_being_read(tmp_path: Path) -> None:
    """3 GB apparent size (sent in full), measured in well under a second, no disk used."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with open(tmp_path / "dump.bin", "wb") as sparse:
        sparse.truncate(3 << 30)
    started = time.monotonic()
    size = measure(tmp_path)
    assert time.monotonic() - started < 1.0
    assert size.total == (3 << 30) + len("FROM scratch\n")
    assert size.biggest[0].path == "dump.bin"


def test_over_the_limit_names_the_biggest_files_and_the_fix(tmp_path: Path) -> None:
    """One paragraph: the size, the limit and its option, the top 5 with sizes, .dockerignore."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    sizes = {"models/a.pt": 9, "models/b.pt": 7, "c.csv": 5, "d.csv": 3, "e.txt": 2, "f.txt": 1}
    for relative, mb in sizes.items():
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        with open(tmp_path / relative, "wb") as sparse:
            sparse.truncate(mb * MB)
    with pytest.raises(ImageBuildError) as refused:
        check_size(tmp_path, 20)
    message = refused.value.message
    assert "\n" not in message and "27.0 MB" in message and "20 MB (--build-context-mb)" in message
    shown = "models/a.pt (9.0 MB); models/b.pt (7.0 MB); c.csv (5.0 MB); d.csv (3.0 MB); e.txt"
    assert shown in message and "f.txt" not in message
    assert str(tmp_path / ".dockerignore") in message and "`models/a.pt`" in message
    (tmp_path / ".dockerignore").write_text("models/\n")  # the fix it names
    assert check_size(tmp_path, 20).total == 11 * MB + len("FROM scratch\n") + len("models/\n")


def test_an_unlistable_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory that cannot be listed is a refusal naming the context, not a crash."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "locked").mkdir(mode=0)
    listdir = os.listdir

    def denied(path: str) -> list[str]:  # what a non-root user meets (root lists everything)
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", path)
        return listdir(path)

    monkeypatch.setattr(os, "listdir", denied)
    with pytest.raises(ImageBuildError, match="cannot list your build context") as refused:
        measure(tmp_path)
    assert "locked" in refused.value.message and ".dockerignore" in refused.value.message


def test_an_unreadable_file_is_named_before_the_sdk_fails_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file this user cannot read: named with both fixes (root reads all: access faked)."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "secret.key").write_text("k")
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path).name != "secret.key" and access(path, mode)
    )
    with pytest.raises(ImageBuildError, match="cannot read it") as refused:
        measure(tmp_path)
    assert str(tmp_path / "secret.key") in refused.value.message
    assert str(tmp_path / ".dockerignore") in refused.value.message


def test_sizes_read_as_docker_prints_them() -> None:
    """Powers of ten, one decimal."""
    assert [decimal_size(n) for n in (12, 412_000, 5_242_880, 3 << 30)] == [
        "12 B",
        "412.0 kB",
        "5.2 MB",
        "3.2 GB",
    ]


BUILD_STREAM = [
    "Step 1/5 : FROM python:3.11-slim",
    "\n",
    " ---> 84db463d7d46\n",
    "Step 2/5 : COPY requirements.txt ./",
    "\n",
    " ---> Using cache\n ---> 7836d1169fcb\n",
    "Step 3/5 : COPY . ./",
    "\n",
    " ---> bdb9ecfc8d6c\n",
    "Step 4/5 : RUN echo marker > /m",
    "\n",
    " ---> Running in e105ccea3578\n",
    "Removing intermediate container e105ccea3578\n",
    " ---> be9183eb27ce\n",
    "Step 5/5 : RUN echo step-before-hang && sleep infinity",
    "\n",
    " ---> Running in 961bf45fa6a8\n",
    "step-before",
    "-hang\n",
]


def test_the_build_log_gives_the_step_its_container_and_the_images_it_made() -> None:
    """Not FROM's base, not the cache: the COPY and RUN images; the hanging step's container."""
    log = _BuildLog()
    for piece in BUILD_STREAM:
        log.feed(piece)
    assert log.committed == ["bdb9ecfc8d6c", "be9183eb27ce"]
    assert log.container == "961bf45fa6a8"
    assert log.step == "5/5 (`RUN echo step-before-hang && sleep infinity`)"
    assert log.tail()[-1] == "step-before-hang" and len(log.tail()) == len(log.lines) == 14
    assert log.tail()[0] == "Step 1/5 : FROM python:3.11-slim"


def test_the_build_log_stays_bounded_and_takes_no_short_ids() -> None:
    """A line that never ends is kept short; an id that is not the engine's form is ignored."""
    log = _BuildLog()
    log.feed("Step 1/2 : RUN x\n ---> Running in abc\n")
    assert log.container is None
    for _ in range(1000):
        log.feed("y" * 10_000)
    assert len(log.tail()[-1]) <= 500 and len(log.lines) <= 200


@pytest.mark.parametrize(
    ("command", "cmd"),
    [
        (
            "uvicorn app.main:app --host 127.0.0.1 --port $PORT",
            'CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port ${PORT:-8000}"]',
        ),
        (
            "uvicorn app.main:app --host=localhost --port ${PORT}",
            'CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port ${PORT:-8000}"]',
        ),
        (
            "python -m app --port ${PORT:-9000}",
            'CMD ["sh", "-c", "exec python -m app --port ${PORT:-9000}"]',
        ),
    ],
)
def test_the_suggested_cmd_serves_on_all_addresses_and_port(command: str, cmd: str) -> None:
    """The manifest's command, on 0.0.0.0 and $PORT (8000 by default), in exec form."""
    assert suggested_cmd(command) == cmd


def test_a_dockerfile_sets_a_command_with_cmd_or_entrypoint() -> None:
    """Either instruction, any case, at a line's start; a comment mentioning CMD is not one."""
    assert sets_command('FROM x\ncmd ["a"]\n') and sets_command("FROM x\n  ENTRYPOINT a\n")
    assert not sets_command("FROM x\n# CMD is missing\nRUN echo CMD\n")
