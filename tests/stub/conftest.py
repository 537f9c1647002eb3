"""Fixtures of the stub's tests: one shared stub, reset before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.stub._support import Stub, StubFactory, start_stub


@pytest.fixture(scope="session")
def shared_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """Start one stub for the whole session, with default knobs."""
    stub = start_stub(tmp_path_factory.mktemp("stub") / "stderr.txt")
    yield stub
    stub.stop()


@pytest.fixture
def stub(shared_stub: Stub) -> Stub:
    """Return the shared stub, with no rules, journal, ledger or keys left from other tests."""
    response = shared_stub.admin("POST", "/reset")
    assert response.status_code == 200
    return shared_stub


@pytest.fixture
def client(stub: Stub) -> Iterator[httpx.Client]:
    """Return an HTTP client of the shared stub's provider port."""
    with httpx.Client(base_url=stub.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def make_stub(tmp_path: Path) -> Iterator[StubFactory]:
    """Return a factory of extra stubs (own knobs), all stopped at teardown."""
    started: list[Stub] = []

    def make(
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        owner_pid: int | None = None,
    ) -> Stub:
        """Start a stub with these arguments, environment and owner process."""
        stub = start_stub(tmp_path / f"stderr-{len(started)}.txt", args, env, owner_pid)
        started.append(stub)
        return stub

    yield make
    for stub in started:
        stub.stop()
