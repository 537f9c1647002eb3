"""Remote imports of a k6 script, found before k6 starts: the grader never fetches a module.

k6 fetches ``import ... from 'https://jslib.k6.io/...'`` when it reads the script (``k6 inspect``
too): offline that fails, and where DNS never answers it hangs about 20 s first. Grading must be
reproducible and offline, so a script that imports a module from the network, directly or
through a local module it imports, is refused before k6 starts, naming the import to vendor
into the repository and how.

Remote, as k6 resolves specifiers (``loader.Resolve``): ``http(s)://`` URLs, protocol-relative
``//host/path``, the ``cdnjs.com/...`` and ``github.com/...`` shorthands (k6 0.x fetched them,
1.x refuses them) and a bare specifier that starts with a host name (``jslib.k6.io/...``, which
k6 0.x fetched over https). An import leading out of the repository (``../../shared/lib.js``,
``/home/me/lib.js``, ``file:///...``) is refused too: the grader's checkout has no such file.
Built-in modules (``k6``, ``k6/...``) are fine, and so are local ones, which are followed,
bounded; past a bound the rest is left to k6, whose own run is bounded in time. The imports are
found by :mod:`grader.engine.jsscan`, lexically: nothing is run, nothing is fetched.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from grader.engine.jsscan import Form, Steps, scan
from grader.errors import EnvironmentProblem
from grader.learner import learnerfile
from grader.model import Location
from grader.paths import followed

# Local modules followed from the script, the script included; each is read whole, and at most
# this much in all; the lexer takes at most MAX_STEPS steps over them all (a step is a string,
# a comment, a slash...: real JavaScript has 8,500 per MB on average, 68,000 in the densest
# file of npm's tree). Past a bound the rest is left to k6. Measured on a 2-vCPU VM under load:
# real code scans at about 25 MB/s; the slowest text per step (divisions, "a/b" repeated) takes
# 1.4 us a step, so no text takes more than about a second (tests/test_k6.py holds it to it).
MAX_MODULES = 64
MODULE_MAX_BYTES = 4 * learnerfile.MIB
TOTAL_MAX_BYTES = 8 * learnerfile.MIB
MAX_STEPS = 600_000
SHOWN_MAX = 5  # refused imports listed in a message; the rest are counted

Kind = Literal["remote", "shorthand", "outside"]


@dataclass(frozen=True, slots=True)
class RemoteImport:
    """An import k6 would resolve outside the repository: from the network, or another path."""

    file: str  # the module that imports it, relative to the repo, forward slashes
    line: int
    specifier: str  # as written
    kind: Kind
    url: str  # where to download it from ("" for an import outside the repo)
    form: Form  # import ... from, import 'x', import(), require()
    clause: str  # for form "from": what precedes the specifier, e.g. "import { a } from"
    via: tuple[str, ...] = ()  # the imports leading to ``file`` from the script, "file:line"

    @property
    def location(self) -> Location:
        """Where the import is written."""
        return Location(self.file, self.line)

    @property
    def vendor_path(self) -> str:
        """Where in the repo to put the module: ``vendor/`` beside the file importing it."""
        name = _module_name(self.url or self.specifier)
        folder = PurePosixPath(self.file).parent
        return (folder / "vendor" / name).as_posix() if str(folder) != "." else f"vendor/{name}"

    def local_import(self) -> str:
        """The import as it reads once the module is in the repo."""
        target = f"'./vendor/{_module_name(self.url or self.specifier)}'"
        if self.form == "from":
            return f"{self.clause} {target}"
        return {"bare": f"import {target}", "dynamic": f"import({target})"}.get(
            self.form, f"require({target})"
        )

    def __str__(self) -> str:
        """``loadtest/checkout.js:12 imports https://... (through loadtest/lib.js:3)``."""
        through = f" (imported through {', '.join(self.via)})" if self.via else ""
        what = {
            "remote": f"imports {_shown(self.specifier)} from the network",
            "shorthand": f"imports {_shown(self.specifier)}, a k6 shorthand for a module on "
            f"the network",
            "outside": f"imports {_shown(self.specifier)}, a file outside your repository",
        }[self.kind]
        return f"{self.location} {what}{through}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a check says of a script whose imports it refuses: one paragraph's parts."""

    summary: str
    measured: str
    expected: str
    hint: str
    location: Location

    @property
    def message(self) -> str:
        """The whole refusal as one paragraph."""
        return f"{self.summary}. {self.measured}. {self.hint}"


class ImportsRefused(EnvironmentProblem):
    """A k6 script the grader will not start k6 on: it imports modules from outside its files.

    As with :class:`~grader.errors.ToolTimeout`, whose fault that is depends on whose script it
    is: a check running the learner's own script turns it into its FAIL; the grader's own
    script importing from the network is an installation to fix.
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message, location=refusal.location)
        self.refusal = refusal


def refusal(refused: tuple[RemoteImport, ...]) -> Refusal:
    """Why a script with these imports is not graded as it is, and how to vendor them."""
    first = refused[0]
    listed = [str(r) for r in refused[:SHOWN_MAX]]
    if len(refused) > SHOWN_MAX:
        listed.append(f"and {len(refused) - SHOWN_MAX} more")
    remote = [r for r in refused if r.kind != "outside"]
    outside = [r for r in refused if r.kind == "outside"]
    steps = []
    if remote:
        downloads = {r.url: r for r in remote}  # one download per module, however often imported
        commands = ", ".join(
            f"`curl -fsSL --create-dirs -o {r.vendor_path} {_shown(url)}`"
            for url, r in list(downloads.items())[:SHOWN_MAX]
        )
        steps.append(
            f"Vendor {'it' if len(downloads) == 1 else 'each module'} into your repository: "
            f"download it ({commands}), commit it, and import it by relative path "
            f"(`{remote[0].local_import()}` in {remote[0].file}). "
            "If the file you download imports other URLs, vendor those the same way"
        )
    if outside:
        steps.append(
            f"Copy {_shown(outside[0].specifier)} into your repository (e.g. beside "
            f"{outside[0].file}) and import it by a relative path inside the repository"
        )
    kinds = "from the network" if remote else "from outside your repository"
    them = "it" if len(refused) == 1 else "them"
    return Refusal(
        summary=f"{first}: the grader reads only your repository; copy {them} in"
        if first.kind == "outside"
        else f"{first}: the grader does not fetch modules; vendor {them} into your repository",
        measured="; ".join(listed),
        expected="imports of k6's built-in modules (k6, k6/http, ...) and of files in your "
        "repository by relative path",
        hint=". ".join(steps)
        + f". The grader never loads a module {kinds}, so that grading gives the same "
        "verdict on any machine, online or not.",
        location=first.location,
    )


def remote_imports(script: Path, repo: Path) -> tuple[RemoteImport, ...]:
    """Every import of ``script``, and of the local modules it imports, that leaves ``repo``.

    In reading order (the script's own imports first where they come first). Raises
    :class:`~grader.learner.learnerfile.LearnerFileError` for a module it imports that cannot
    be read as it is (a FIFO, a symlink out of the repo); a missing one is left to k6.
    """
    root = repo.resolve()
    # Not the script's own symlink resolved: k6 resolves its imports from where it is named.
    start = _relative(script.parent.resolve() / script.name, root)
    if start is None:
        raise ValueError(f"{script} is not inside {repo}")
    found: list[RemoteImport] = []
    seen = {start}
    budget, steps = [TOTAL_MAX_BYTES], Steps(MAX_STEPS)

    def visit(relative: str, text: str, via: tuple[str, ...]) -> None:
        for each in scan(text, steps):
            line, specifier, form = each.line, each.specifier, each.form
            kind, url = classify(specifier)
            if kind in ("remote", "shorthand"):
                found.append(
                    RemoteImport(relative, line, specifier, kind, url, form, each.clause, via)
                )
            elif kind == "local":
                target = _resolve(specifier, relative, root)
                if target is None:
                    found.append(
                        RemoteImport(relative, line, specifier, "outside", "", form, "", via)
                    )
                elif target not in seen and len(seen) < MAX_MODULES and not steps.spent:
                    seen.add(target)
                    module = _read(root, target, budget)
                    if module is not None:
                        visit(target, module, (*via, f"{relative}:{line}"))

    visit(start, _decode(learnerfile.read_bytes(root, start, learnerfile.K6_SCRIPT_MAX_BYTES)), ())
    return tuple(found)


def classify(specifier: str) -> tuple[Literal["builtin", "local", "other"] | Kind, str]:
    """What k6 does with a module specifier, and the URL it would fetch ("" if none)."""
    lowered = specifier.lower()
    if specifier == "k6" or specifier.startswith("k6/"):
        return "builtin", ""
    if lowered.startswith(("http://", "https://")):
        return "remote", specifier
    if specifier.startswith("//"):
        return "remote", f"https:{specifier}"
    shorthand = _SHORTHAND.match(specifier)
    if shorthand is not None:
        return "shorthand", _shorthand_url(shorthand)
    if specifier.startswith((".", "/")) or lowered.startswith("file://"):
        return "local", ""
    if "://" not in specifier and _HOST_PATH.match(specifier):
        return "remote", f"https://{specifier}"
    return "other", ""  # another scheme, or a name k6 does not know: k6 says so at once


# -- specifiers to places

_SHORTHAND = re.compile(r"(?i)(cdnjs\.com|github\.com)/(.*)")
_HOST_PATH = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::\d+)?/")


def _shorthand_url(match: re.Match[str]) -> str:
    """Where a shorthand's module is: k6 0.x's own mapping for github.com."""
    host, rest = match.group(1).lower(), match.group(2)
    parts = rest.split("/", 2)
    if host == "github.com" and len(parts) == 3:
        return f"https://raw.githubusercontent.com/{parts[0]}/{parts[1]}/master/{parts[2]}"
    return f"https://{match.group(0)}"  # cdnjs.com/libraries/NAME: the page lists its files


def _resolve(specifier: str, importer: str, root: Path) -> str | None:
    """A local specifier as a path relative to ``root``, or None when it leads outside."""
    if specifier.lower().startswith("file://"):
        target = Path(unquote(urlsplit(specifier).path))
    else:
        path = unquote(specifier.split("?", 1)[0].split("#", 1)[0])
        target = Path(path) if path.startswith("/") else root / Path(importer).parent / path
    normalized = Path(os.path.normpath(target))
    inside = _relative(normalized, root)
    if inside is None and normalized.is_absolute():
        # An absolute path to the repo itself, through a symlinked parent directory.
        real = followed(normalized)
        inside = None if real is None else _relative(real, root)
    return inside


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def _read(root: Path, relative: str, budget: list[int]) -> str | None:
    """A local module's text, or None when it is missing or past a bound (k6 deals with it)."""
    try:
        found = os.stat(root / relative)
    except OSError:
        return None  # missing: k6 names it when it runs
    if stat.S_ISREG(found.st_mode) and found.st_size > min(MODULE_MAX_BYTES, budget[0]):
        return None
    data = learnerfile.read_bytes(root, relative, MODULE_MAX_BYTES)
    budget[0] -= len(data)
    return _decode(data)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").removeprefix(learnerfile.BOM)


def _module_name(where: str) -> str:
    """A file name for a module from its URL: k6-utils.js for .../k6-utils/1.4.0/index.js."""
    path = urlsplit(where if "://" in where else f"https://{where.lstrip('/')}").path
    parts = [p for p in path.split("/") if p]
    if parts and re.fullmatch(r"index(\.m?js)?", parts[-1]):
        parts.pop()
    while parts and re.fullmatch(r"v?\d+(\.\d+)*([-+.][\w.]*)?|latest|master|main", parts[-1]):
        parts.pop()
    last = (parts[-1] if parts else "module").split("@", 1)[0]  # uuid@9.0.0 is uuid
    name = re.sub(r"[^\w.-]", "-", last).strip(".-") or "module"
    return name if name.endswith((".js", ".mjs")) else f"{name}.js"


def _shown(text: str) -> str:
    """A specifier as a message shows it: on one line, and bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 200 else f"{flat[:199]}…"
