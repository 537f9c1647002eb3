"""The k6 runner and both summary parsers, on output the real k6 binary writes.

Each trap of k6's summaries gets a test against a real run: k6 runs on loopback against the
real stub, for about a second each.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from grader.engine import jsscan, k6, k6imports
from grader.errors import ToolTimeout
from grader.learner import learnerfile
from grader.model import Location
from grader.process.proctable import proc_table
from grader.process.tracker import ProcessTracker, current_tracker
from tests.conftest import ROOT
from tests.stub._support import Stub, start_stub

TRAPS = """
import http from 'k6/http';
export const options = {
  iterations: 5,
  thresholds: {
    'http_req_duration': ['p(95)<0'],
    'http_req_duration{scenario:nowhere}': ['p(95)<1'],
    'http_req_failed': ['rate<1'],
  },
};
export default function () {
  http.post(`${__ENV.BASE_URL}/charge`, JSON.stringify({amount_cents: 5}),
            {headers: {'Content-Type': 'application/json'}});
}
export function handleSummary(data) {
  return {[__ENV.SUMMARY_PATH]: JSON.stringify(data), stdout: ''};
}
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """A real stub for k6 to load."""
    started = start_stub(tmp_path_factory.mktemp("k6-stub") / "stderr.txt")
    yield started
    started.stop()


def run(tmp_path: Path, source: str, stub: Stub) -> k6.Run:
    """Run a k6 script for real against the stub."""
    script = tmp_path / "script.js"
    script.write_text(source)
    return asyncio.run(k6.run(script, {"BASE_URL": stub.url}, timeout_s=60))


@pytest.fixture(scope="module")
def traps(tmp_path_factory: pytest.TempPathFactory, stub: Stub) -> k6.Run:
    """One real run whose summaries hold every trap."""
    return run(tmp_path_factory.mktemp("traps"), TRAPS, stub)


def test_crossed_threshold_exits_99(traps: k6.Run) -> None:
    """Crossed thresholds end k6 with exit code 99, which is a result, not a problem."""
    assert traps.exit_code == k6.EXIT_THRESHOLDS_CROSSED
    assert traps.problem is None


def test_export_true_means_failed(traps: k6.Run) -> None:
    """In --summary-export, a threshold's true means FAILED; both parsers agree on the verdict."""
    exported = traps.export.metrics["http_req_duration"].thresholds
    summarised = traps.summary.metrics["http_req_duration"].thresholds
    assert [(t.expression, t.passed) for t in exported] == [("p(95)<0", False)]
    assert [(t.expression, t.passed) for t in summarised] == [("p(95)<0", False)]


def test_vacuous_threshold_passes_without_samples(traps: k6.Run) -> None:
    """k6 passes a threshold on a sub-metric with no samples: the model shows zero samples."""
    nowhere = traps.summary.metrics["http_req_duration{scenario:nowhere}"]
    assert nowhere.thresholds[0].passed is True
    assert not nowhere.samples


def test_p99_absent_unless_asked(traps: k6.Run) -> None:
    """Without summaryTrendStats asking for it, p(99) is not in the summary."""
    values = traps.summary.metrics["http_req_duration"].values
    assert "p(95)" in values and "p(99)" not in values


def test_rate_metric_counts_samples(traps: k6.Run) -> None:
    """A rate metric's samples are its passes plus fails."""
    assert traps.summary.metrics["http_req_failed"].samples == 5


def test_thrown_iteration_still_exits_0(tmp_path: Path, stub: Stub) -> None:
    """An iteration that throws does not fail the run: k6 exits 0 (the grader's script counts)."""
    source = "export const options = {iterations: 2};\nexport default function () { throw 1; }"
    assert run(tmp_path, source, stub).exit_code == 0


def test_bad_threshold_is_104(tmp_path: Path, stub: Stub) -> None:
    """A threshold k6 cannot parse is exit 104, a problem the grader reports."""
    source = TRAPS.replace("'p(95)<0'", "'p95 less than 3'")
    result = run(tmp_path, source, stub)
    assert result.exit_code == 104
    assert result.problem is not None and "invalid" in result.problem


def test_script_error_is_107(tmp_path: Path, stub: Stub) -> None:
    """A script that fails in its init code is exit 107."""
    result = run(tmp_path, "throw new Error('broken');\nexport default function () {}", stub)
    assert result.exit_code == 107


@pytest.mark.parametrize(
    ("text", "aggregate", "operator", "limit"),
    [
        ("p(95)<3000", "p(95)", "<", 3000),
        ("rate < 0.01", "rate", "<", 0.01),
        ("count>=1", "count", ">=", 1),
        ("p(99.9)<=250", "p(99.9)", "<=", 250),
        ("avg===5", "avg", "==", 5),
    ],
)
def test_expression_grammar(text: str, aggregate: str, operator: str, limit: float) -> None:
    """Threshold expressions parse into aggregate, operator and limit."""
    assert k6.Expression.parse(text) == k6.Expression(aggregate, operator, limit)


def test_expression_rejects_nonsense() -> None:
    """What k6 would reject does not parse."""
    with pytest.raises(ValueError, match="not a k6 threshold"):
        k6.Expression.parse("p95<3")


def test_metric_tags() -> None:
    """A metric name splits from its tag filter."""
    parsed = k6.MetricName.parse("http_req_duration{name:checkout, scenario:slow}")
    assert parsed == k6.MetricName("http_req_duration", {"name": "checkout", "scenario": "slow"})


# -- k6 is one of the run's processes

SLEEPER = "import { sleep } from 'k6';\nexport default function () { sleep(%s); }\n"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own directory of run state files."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path / "runtime" / "failfast" / "runs"


def k6_children() -> list[int]:
    """The k6 processes the test's process started, still running."""
    return [
        stat.pid
        for stat in proc_table().values()
        if stat.comm == "k6" and stat.ppid == os.getpid() and stat.running
    ]


async def watch_run(script: Path, seen: Callable[[], bool], timeout_s: float = 60) -> bool:
    """Run ``script`` with k6, looking meanwhile (bounded) for ``seen()`` to hold once."""
    task = asyncio.create_task(k6.run(script, {}, timeout_s=timeout_s))
    found = False
    deadline = time.monotonic() + 30
    while not task.done() and not found and time.monotonic() < deadline:
        found = seen()
        await asyncio.sleep(0.05)
    await task
    return found


def test_k6_is_tracked_by_the_runs_tracker(tmp_path: Path, runs: Path) -> None:
    """With a run open, k6 is one of its processes: recorded in its state file, then stopped."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 2)
    tracker = ProcessTracker()
    try:
        assert tracker.state_file is not None
        state = tracker.state_file

        def recorded() -> bool:
            members = {stat.comm for stat, _ in tracker.members()}
            processes = json.loads(state.read_text())["processes"]
            return "k6" in members and "k6" in {p["comm"] for p in processes}

        assert asyncio.run(watch_run(script, recorded)), "k6 was never among the run's processes"
        assert tracker.members() == []
        assert json.loads(state.read_text())["processes"] == []
    finally:
        tracker.close()


def test_k6_without_a_run_is_tracked_by_one_of_its_own(tmp_path: Path, runs: Path) -> None:
    """No run open: k6 gets a tracker of its own, whose state file names it until it ends."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 2)

    def recorded() -> bool:
        return any(
            "k6" in {p["comm"] for p in json.loads(path.read_text())["processes"]}
            for path in runs.glob("*.json")
        )

    assert asyncio.run(watch_run(script, recorded)), "no state file ever named k6"
    assert current_tracker() is None
    assert not list(runs.glob("*.json"))
    assert k6_children() == []


def test_k6_overrun_is_a_tool_timeout_and_k6_is_gone(tmp_path: Path, runs: Path) -> None:
    """k6 past its limit: ToolTimeout naming it, and no k6 left running."""
    script = tmp_path / "sleep.js"
    script.write_text(SLEEPER % 60)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="k6 run"):
        asyncio.run(k6.run(script, {}, timeout_s=1.0))
    assert time.monotonic() - started < 10
    assert k6_children() == []


# -- remote imports, found before k6 starts (grader/engine/k6imports.py, jsscan.py)

JSLIB = "https://jslib.k6.io/k6-utils/1.4.0/index.js"


def specifiers(source: str) -> list[tuple[int, str]]:
    """(line, specifier) of every import the scanner finds in ``source``."""
    return [(found.line, found.specifier) for found in jsscan.scan(source)]


@pytest.mark.parametrize(
    ("source", "form"),
    [
        (f"import {{ randomIntBetween }} from '{JSLIB}';", "from"),
        (f'import utils from "{JSLIB}"', "from"),
        (f"import * as utils from '{JSLIB}';", "from"),
        (f"import def, {{ a as b, 'x-y' as c }} from '{JSLIB}';", "from"),
        (f"import from from '{JSLIB}';", "from"),
        (f"import data from '{JSLIB}' with {{ type: 'json' }};", "from"),
        (f"import '{JSLIB}';", "bare"),
        (f"const utils = await import('{JSLIB}');", "dynamic"),
        (f"const utils = await import(`{JSLIB}`);", "dynamic"),
        (f"const utils = require('{JSLIB}');", "require"),
        (f"const v = [...require('{JSLIB}').list];", "require"),
        (f"export * from '{JSLIB}';", "from"),
        (f"export * as utils from '{JSLIB}';", "from"),
        (f"export {{ randomIntBetween, uuidv4 as id }} from '{JSLIB}';", "from"),
        (f"const t = `${{ await import('{JSLIB}') }}`;", "dynamic"),  # a substitution is code
        ("import x from 'https:\\/\\/jslib.k6.io/k6-utils/1.4.0/index.js';", "from"),
    ],
)
def test_every_import_form_is_found(source: str, form: str) -> None:
    """Each way JavaScript imports a module is found, with its form and its specifier."""
    found = list(jsscan.scan(f"// a header\n{source}\n"))
    assert [(f.line, f.specifier, f.form) for f in found] == [(2, JSLIB, form)]


@pytest.mark.parametrize(
    ("specifier", "kind", "url"),
    [
        (JSLIB, "remote", JSLIB),
        ("http://example.com/lib.js", "remote", "http://example.com/lib.js"),
        ("HTTPS://example.com/lib.js", "remote", "HTTPS://example.com/lib.js"),
        ("//jslib.k6.io/k6-utils/1.4.0/index.js", "remote", JSLIB),
        ("jslib.k6.io/k6-utils/1.4.0/index.js", "remote", JSLIB),
        ("cdnjs.com/libraries/Faker", "shorthand", "https://cdnjs.com/libraries/Faker"),
        (
            "github.com/grafana/k6-jslib-utils/src/utils.js",
            "shorthand",
            "https://raw.githubusercontent.com/grafana/k6-jslib-utils/master/src/utils.js",
        ),
        ("k6", "builtin", ""),
        ("k6/http", "builtin", ""),
        ("k6/metrics", "builtin", ""),
        ("k6/experimental/browser", "builtin", ""),
        ("./lib/helpers.js", "local", ""),
        ("../shared/helpers.js", "local", ""),
        ("/home/me/helpers.js", "local", ""),
        ("file:///home/me/helpers.js", "local", ""),
        ("lodash", "other", ""),
        ("ftp://example.com/lib.js", "other", ""),
    ],
)
def test_specifiers_are_classified_as_k6_resolves_them(specifier: str, kind: str, url: str) -> None:
    """What k6 fetches is remote, with the URL to download; built-ins and local paths are not."""
    assert k6imports.classify(specifier) == (kind, url)


NOT_IMPORTS = f"""
// import {{ a }} from '{JSLIB}';
/* import {{ b }} from "{JSLIB}";
   import('{JSLIB}') */
/**
 * @example
 * import {{ c }} from '{JSLIB}';
 */
const s1 = "import {{ d }} from '{JSLIB}'";
const s2 = 'require("{JSLIB}")';
const s3 = `import {{ e }} from '{JSLIB}' and ${{1 + 1}} import('{JSLIB}')`;
const quote = /'/g; const s4 = "import f from '{JSLIB}'";
const half = total / 2; const s5 = 'import g from "{JSLIB}"';
const klass = /["'`]/; const s6 = "export * from '{JSLIB}'";
const node = module.require('{JSLIB}'); const other = obj.import('{JSLIB}');
const options = {{ import: '{JSLIB}', require: '{JSLIB}' }};
const computed = require('./lib/' + name);
const meta = import.meta.url;
export const from = '{JSLIB}';
export default {{ from: '{JSLIB}' }};
"""


def test_imports_in_comments_strings_and_regexes_are_not_imports() -> None:
    """URLs in comments, strings, templates, regexes, properties and object keys: no import."""
    assert specifiers(NOT_IMPORTS) == []
    # The same text with one real import at its end: found, on its line.
    lines = NOT_IMPORTS.count("\n")
    assert specifiers(f"{NOT_IMPORTS}import {{ h }} from '{JSLIB}';\n") == [(lines + 1, JSLIB)]


def test_line_numbers_are_the_specifiers() -> None:
    """A multi-line import is located on its specifier's line; CRLF counts a line once."""
    source = (
        "import http from 'k6/http';\r\n"
        "\r\n"
        "import {\r\n"
        "  randomIntBetween,\r\n"
        f"}} from '{JSLIB}';\r\n"
        "export default function () {}\r\n"
        "const later = require('./lib.js');\r\n"
    )
    assert specifiers(source) == [(1, "k6/http"), (5, JSLIB), (7, "./lib.js")]


def write(repo: Path, files: dict[str, str]) -> Path:
    """A learner repo holding ``files``; returns its root."""
    for relative, text in files.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    return repo


def test_a_local_module_chaining_to_a_remote_one_is_found(tmp_path: Path) -> None:
    """checkout.js -> lib/a.js -> shared/b.js -> https://: found in b.js, with the chain."""
    repo = write(
        tmp_path,
        {
            "loadtest/checkout.js": "import http from 'k6/http';\n"
            "import { a } from './lib/a.js';\n",
            "loadtest/lib/a.js": "export { b as a } from '../shared/b.js';\n",
            "loadtest/shared/b.js": f"// vendored? not yet\n\nimport {{ x }} from '{JSLIB}';\n"
            "import { a } from '../lib/a.js';\n",  # a cycle: followed once
        },
    )
    found = k6imports.remote_imports(repo / "loadtest/checkout.js", repo)
    assert found == (
        k6imports.RemoteImport(
            "loadtest/shared/b.js",
            3,
            JSLIB,
            "remote",
            JSLIB,
            "from",
            "import { x } from",
            ("loadtest/checkout.js:2", "loadtest/lib/a.js:1"),
        ),
    )
    assert found[0].vendor_path == "loadtest/shared/vendor/k6-utils.js"


def test_imports_escaping_the_repo_are_refused(tmp_path: Path) -> None:
    """A relative path out of the repo, an absolute path, a file: URL: each refused, located."""
    (tmp_path / "outside.js").write_text("export const x = 1;\n")
    repo = write(
        tmp_path / "repo",
        {
            "loadtest/checkout.js": "import { x } from '../../outside.js';\n"
            f"import {{ y }} from '{tmp_path / 'outside.js'}';\n"
            f"import {{ z }} from 'file://{tmp_path / 'outside.js'}';\n"
            "import { inside } from '../lib/inside.js';\n"
            "import { gone } from './missing.js';\n",  # missing: k6 says so itself
            "lib/inside.js": "export const inside = 1;\n",
        },
    )
    found = k6imports.remote_imports(repo / "loadtest/checkout.js", repo)
    assert [(r.line, r.kind) for r in found] == [(1, "outside"), (2, "outside"), (3, "outside")]
    why = k6imports.refusal(found)
    assert why.location == Location("loadtest/checkout.js", 1)
    assert "outside your repository" in why.summary and "Copy ../../outside.js" in why.hint


def test_a_module_symlinked_out_of_the_repo_is_unreadable(tmp_path: Path) -> None:
    """A local module that is a symlink leading out of the repo: the learner-file error."""
    (tmp_path / "elsewhere.js").write_text(f"import '{JSLIB}';\n")
    repo = write(tmp_path / "repo", {"loadtest/checkout.js": "import './lib.js';\n"})
    (repo / "loadtest/lib.js").symlink_to(tmp_path / "elsewhere.js")
    with pytest.raises(learnerfile.LearnerFileError, match="leads outside your repository"):
        k6imports.remote_imports(repo / "loadtest/checkout.js", repo)


def test_the_refusal_says_what_to_vendor_and_how(tmp_path: Path) -> None:
    """The hint downloads the module beside the script and rewrites the import by path."""
    repo = write(
        tmp_path,
        {
            "loadtest/checkout.js": f"import {{ randomIntBetween }} from '{JSLIB}';\n"
            f"const {{ uuidv4 }} = require('{JSLIB}');\n"
            "import { faker } from 'cdnjs.com/libraries/Faker';\n"
        },
    )
    why = k6imports.refusal(k6imports.remote_imports(repo / "loadtest/checkout.js", repo))
    assert why.summary.startswith(f"loadtest/checkout.js:1 imports {JSLIB} from the network")
    assert why.measured.count("loadtest/checkout.js:") == 3
    assert f"`curl -fsSL --create-dirs -o loadtest/vendor/k6-utils.js {JSLIB}`" in why.hint
    assert "-o loadtest/vendor/Faker.js https://cdnjs.com/libraries/Faker" in why.hint
    assert "`import { randomIntBetween } from './vendor/k6-utils.js'`" in why.hint
    assert why.location == Location("loadtest/checkout.js", 1)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (JSLIB, "k6-utils.js"),
        ("https://jslib.k6.io/k6-summary/0.0.2/index.js", "k6-summary.js"),
        (
            "https://cdnjs.cloudflare.com/ajax/libs/crypto-js/4.1.1/crypto-js.min.js",
            "crypto-js.min.js",
        ),
        ("https://cdn.jsdelivr.net/npm/uuid@9.0.0/+esm", "esm.js"),
        ("https://example.com/", "module.js"),
    ],
)
def test_vendored_file_names(url: str, name: str) -> None:
    """A module's suggested file name comes from its URL, without index.js or versions."""
    found = k6imports.RemoteImport("loadtest/checkout.js", 1, url, "remote", url, "bare", "")
    assert found.vendor_path == f"loadtest/vendor/{name}"


# Texts that make the lexer work hardest per byte, each 4 MiB: its step budget bounds them.
ADVERSARIAL = {
    "divisions": "a/b",
    "unclosed regex classes": "(/[",
    "regex literals": "(/",
    "strings": "'a'+",
    "keywords": "import ",
    "import clauses": "import {a,",
    "template substitutions": "`${",
    "comments": "//\n",
}


@pytest.mark.parametrize("unit", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_scanning_is_bounded_in_time(tmp_path: Path, unit: str) -> None:
    """4 MiB of the worst text for the lexer is scanned in bounded time (under 3 s here)."""
    text = unit * (k6imports.MODULE_MAX_BYTES // len(unit) - 1)
    repo = write(
        tmp_path, {"loadtest/checkout.js": "import './lib.js';\n", "loadtest/lib.js": text}
    )
    started = time.monotonic()
    k6imports.remote_imports(repo / "loadtest/checkout.js", repo)
    elapsed = time.monotonic() - started
    print(f"{len(text) / 2**20:.1f} MiB of {unit!r}: {elapsed:.2f} s")
    assert elapsed < 3.0


def test_scanner_agrees_with_acorn(tmp_path: Path) -> None:
    """On real packages and on the tricky text, the imports found are acorn's (Node's parser)."""
    node = shutil.which("node")
    assert node is not None, "node is needed to compare with acorn"
    files = sorted((ROOT / "tests/js/node_modules").rglob("*.js"))
    tricky = tmp_path / "tricky.js"
    tricky.write_text(f"{NOT_IMPORTS}import {{ h }} from '{JSLIB}';\n")
    files.append(tricky)
    assert len(files) > 50
    done = subprocess.run(
        [node, "--expose-internals", "-e", ACORN_IMPORTS],
        input="\n".join(map(str, files)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    compared = 0
    for line in done.stdout.splitlines():
        parsed = json.loads(line)
        if parsed["imports"] is None:
            continue  # not JavaScript acorn reads (a file for another runtime)
        text = Path(parsed["file"]).read_text(errors="replace")
        assert sorted(specifiers(text)) == sorted(map(tuple, parsed["imports"])), parsed["file"]
        compared += len(parsed["imports"])
    assert compared > 100


# Node's own acorn (node --expose-internals): every import declaration, export-from, import()
# and require() with a literal argument, as (line, specifier).
ACORN_IMPORTS = """
const acorn = require('internal/deps/acorn/acorn/dist/acorn');
const walk = require('internal/deps/acorn/acorn-walk/dist/walk');
const fs = require('fs');
const literal = (n) => n && n.type === 'Literal' && typeof n.value === 'string' ? n.value
  : n && n.type === 'TemplateLiteral' && n.expressions.length === 0 ? n.quasis[0].value.cooked
  : null;
for (const file of fs.readFileSync(0, 'utf8').split('\\n').filter(Boolean)) {
  let ast = null;
  for (const sourceType of ['module', 'script']) {
    try {
      ast = acorn.parse(fs.readFileSync(file, 'utf8'), {ecmaVersion: 'latest', sourceType,
        locations: true, allowHashBang: true, allowReturnOutsideFunction: true});
      break;
    } catch (e) {}
  }
  const imports = ast && [];
  if (ast) walk.full(ast, (n) => {
    const src = n.type === 'ImportDeclaration' || n.type === 'ExportAllDeclaration'
      || n.type === 'ExportNamedDeclaration' ? n.source
      : n.type === 'ImportExpression' ? n.source
      : n.type === 'CallExpression' && n.callee.type === 'Identifier'
        && n.callee.name === 'require' && n.arguments.length === 1 ? n.arguments[0] : null;
    if (src && literal(src) !== null) imports.push([src.loc.start.line, literal(src)]);
  });
  console.log(JSON.stringify({file, imports}));
}
"""


def test_k6_run_refuses_a_remote_import_before_starting_k6(tmp_path: Path, runs: Path) -> None:
    """k6.run on a script importing from the network: ImportsRefused at once, no k6 started."""
    script = tmp_path / "script.js"
    script.write_text(f"import {{ sleep }} from 'k6';\nimport '{JSLIB}';\n" + SLEEPER % 30)
    started = time.monotonic()
    with pytest.raises(k6.ImportsRefused) as refused:
        asyncio.run(k6.run(script, {}, timeout_s=60))
    assert time.monotonic() - started < 2
    assert refused.value.location == Location("script.js", 2)
    assert JSLIB in refused.value.message and "curl -fsSL" in refused.value.message
    assert k6_children() == [] and not list(runs.glob("*.json"))
