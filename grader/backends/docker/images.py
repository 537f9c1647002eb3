"""The images of a docker run besides the learner's (``build``): base images, the stub's, nginx's.

Nothing is pulled unless asked (``--pull``): :func:`missing_base_images` lets a base image this
machine lacks be named before any build starts.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from grader.backends.docker.engine import STUB_IMAGE_LABEL, engine_errors
from grader.backends.docker.options import DockerOptions
from grader.errors import EnvironmentProblem

# The base of the stub's image: the Python image learners' Dockerfiles start from.
STUB_BASE_IMAGE = "python:3.11-slim"
# nginx images tried in order when --nginx-image is not given: the one prod-sim.yml names, then
# the Debian build scripts/setup.sh makes where no registry is reachable.
NGINX_IMAGES = ("nginx:1.27-alpine", "failfast/nginx:bookworm")


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)


def base_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile's FROM lines name, without its own stages, scratch or ${ARG}s."""
    stages: set[str] = set()
    found: list[str] = []
    for match in _FROM.finditer(dockerfile):
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages and image != "scratch" and "$" not in image:
            found.append(image)
        if stage:
            stages.add(stage.lower())
    return found


def has_image(client: docker.DockerClient, image: str) -> bool:
    """Whether this engine has ``image``; call it inside :func:`engine_errors`."""
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def missing_base_images(client: docker.DockerClient, dockerfile: str) -> list[str]:
    """The base images a Dockerfile names that this engine does not have."""
    with engine_errors("looking up base images"):
        return [image for image in base_images(dockerfile) if not has_image(client, image)]


def stub_image(client: docker.DockerClient) -> str:
    """The reference stub's image, built from the installed failfast package once per version.

    The stub needs the `reference` package and h11 only, both pure Python: they are copied
    from this interpreter, so the build needs no network and no pip.
    """
    import h11

    import reference

    sources = [Path(reference.__file__).parent, Path(h11.__file__).parent]
    digest = hashlib.sha256()
    for root in sources:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    tag = f"failfast/stub:{digest.hexdigest()[:12]}"
    with engine_errors("building the payments stub's image"):
        if has_image(client, tag):
            return tag
        with tempfile.TemporaryDirectory(prefix="failfast-stub-") as tmp:
            context = Path(tmp)
            for root in sources:
                shutil.copytree(
                    root, context / "site" / root.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            (context / "Dockerfile").write_text(
                f"FROM {STUB_BASE_IMAGE}\n"
                "COPY site/ /opt/failfast/\n"
                "ENV PYTHONPATH=/opt/failfast PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n"
                "USER 65534:65534\n"
                'ENTRYPOINT ["python", "-m", "reference.stub"]\n'
            )
            try:
                client.images.build(
                    path=str(context),
                    tag=tag,
                    pull=False,
                    rm=True,
                    forcerm=True,
                    labels={STUB_IMAGE_LABEL: "1"},
                )
            except docker.errors.BuildError as exc:
                raise EnvironmentProblem(
                    f"The grader could not build its payments stub's image from {STUB_BASE_IMAGE}"
                    f": {exc.msg}. `failfast doctor` lists the base images the docker backend "
                    "needs (`bash scripts/setup.sh images` makes them without a registry)."
                ) from exc
    return tag


def nginx_image(client: docker.DockerClient, options: DockerOptions) -> str | None:
    """The nginx image to run the learner's conf with: the one asked for, or the first present."""
    wanted = (options.nginx_image,) if options.nginx_image else NGINX_IMAGES
    with engine_errors("looking up the nginx image"):
        return next((image for image in wanted if has_image(client, image)), None)
