"""The backend registry: names, lazy imports, the unknown-name message, declared options."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from grader.backends.base import (
    Backend,
    BackendOption,
    backend_names,
    get_backend,
)
from grader.backends.docker.options import DockerOptions, Limits, from_settings
from grader.errors import GradingError, UnknownBackend
from tests.conftest import ROOT

DOCKER_FLAGS = (
    "pull",
    "api-memory",
    "api-cpus",
    "api-pids",
    "build-timeout",
    "build-context-mb",
    "redis-image",
    "nginx-image",
)


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter at the repo root."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_names_in_registry_order() -> None:
    """Local first (the default), then docker; each package registers the name it is listed by."""
    assert backend_names() == ("local", "docker")
    for name in backend_names():
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
        assert backend.summary and "\n" not in backend.summary


def test_the_registry_imports_no_backend_and_docker_imports_no_sdk() -> None:
    """The registry imports no backend, and naming docker does not import the docker SDK.

    Reading docker's options imports its package alone; its starter (or the doctor) imports the
    SDK.
    """
    code = """
import sys
import grader.backends.base as base
assert "grader.backends.local" not in sys.modules, "local imported"
assert "grader.backends.docker" not in sys.modules, "docker backend imported"
assert "docker" not in sys.modules, "docker SDK imported by the registry"
options = base.get_backend("docker").options
base.get_backend("local").starter({})
assert options and "docker" not in sys.modules, "docker SDK imported by naming the backend"
assert "grader.backends.docker.stack" not in sys.modules
base.get_backend("docker").starter({})
assert "docker" in sys.modules, "the starter imports the SDK"
"""
    done = python(code)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["podman", "", "Local"])
def test_an_unknown_name_is_a_grading_error_naming_the_choices(name: str) -> None:
    """One paragraph: the name asked for, every known one, and where the name came from."""
    with pytest.raises(UnknownBackend) as raised:
        get_backend(name)
    assert isinstance(raised.value, GradingError)
    message = raised.value.message
    assert repr(name) in message and "local, docker" in message
    assert "--backend" in message and "FAILFAST_BACKEND" in message
    assert "\n" not in message


def test_local_declares_no_options_and_no_requirements(tmp_path: Path) -> None:
    """Everything the local backend needs is what every `failfast doctor` checks."""
    local = get_backend("local")
    assert local.options == ()
    assert local.requirements(tmp_path) == []


def test_docker_declares_its_options_with_the_defaults_it_runs_with() -> None:
    """Every docker option: its flag, a help line, a default that is DockerOptions' own."""
    options = {option.flag: option for option in get_backend("docker").options}
    assert tuple(options) == DOCKER_FLAGS
    assert all(
        o.help and "\n" not in o.help and not o.flag.startswith("-") for o in options.values()
    )
    assert {flag: o.kind for flag, o in options.items()} == {
        "pull": bool,
        "api-memory": str,
        "api-cpus": float,
        "api-pids": int,
        "build-timeout": float,
        "build-context-mb": int,
        "redis-image": str,
        "nginx-image": str,
    }
    assert from_settings({o.flag: o.default for o in options.values()}) == DockerOptions()
    assert (options["api-cpus"].minimum, options["api-pids"].minimum) == (0.1, 16)
    assert (options["build-timeout"].default, options["build-context-mb"].default) == (300.0, 200)
    assert (options["build-timeout"].minimum, options["build-context-mb"].minimum) == (1.0, 1)


def test_docker_settings_become_its_options() -> None:
    """Given flags set their field; absent ones keep the default; other backends' are ignored."""
    settings = {"api-memory": "1g", "api-cpus": 2, "pull": True, "nginx-image": "n:1", "x": 1}
    assert from_settings(settings) == DockerOptions(
        Limits(memory="1g", cpus=2.0), pull=True, nginx_image="n:1"
    )
    limits = from_settings({"build-timeout": 20, "build-context-mb": 5}).limits
    assert (limits.build_timeout_s, limits.build_context_mb) == (20.0, 5)
    assert from_settings({}) == DockerOptions()


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"api-pids": "256"}, TypeError),
        ({"pull": 1}, TypeError),
        ({"api-pids": True}, TypeError),
        ({"redis-image": None}, TypeError),
        ({"api-pids": 8}, ValueError),
        ({"api-cpus": 0.05}, ValueError),
        ({"build-timeout": 0.5}, ValueError),
        ({"build-context-mb": 0}, ValueError),
        ({"build-context-mb": 1.5}, TypeError),
    ],
    ids=[
        "str-for-int",
        "int-for-bool",
        "bool-for-int",
        "none-for-str",
        "pids-low",
        "cpus-low",
        "build-timeout-low",
        "context-zero",
        "float-for-context",
    ],
)
def test_a_setting_of_the_wrong_kind_is_refused(
    settings: dict[str, object], error: type[Exception]
) -> None:
    """The CLI checks kinds and bounds; a caller that does not is told which flag is wrong."""
    with pytest.raises(error, match="--"):
        from_settings(settings)


def test_an_option_value_falls_back_to_its_default() -> None:
    """BackendOption.value: the setting, an int taken for a float, or the default."""
    option = BackendOption("api-cpus", "CPUs.", 1.0, float)
    assert option.value({}) == 1.0
    assert option.value({"api-cpus": 3}) == 3.0 and isinstance(option.value({"api-cpus": 3}), float)
    assert BackendOption("nginx-image", "image", None, str).value({}) is None


def test_docker_starter_passes_its_options_to_the_stack() -> None:
    """The docker starter is DockerStack.start with the options the settings make."""
    from grader.backends.docker.stack import DockerStack

    start = get_backend("docker").starter({"api-pids": 64})
    assert isinstance(start, functools.partial) and start.func == DockerStack.start
    assert start.keywords == {"options": DockerOptions(Limits(pids=64))}


def test_docker_requirements_come_engine_first(tmp_path: Path) -> None:
    """The doctor probes the engine, then (once it answers) the rest, in this order."""
    requirements = get_backend("docker").requirements(tmp_path)
    assert [r.name for r in requirements] == [
        "Docker engine",
        "earlier runs",
        "images",
        "host firewall",
    ]
    assert [r.after for r in requirements] == [None, *["Docker engine"] * 3]
    assert [r.required for r in requirements] == [True, False, True, False]
