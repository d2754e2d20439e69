"""The README and the docs stay true to the repository: links resolve, the API reference
lists every public name, CI runs the README's test command, the public docstrings speak at
the API's level and their examples run, and the maths renders.

docs/figures/rendered-maths.png is IndeCateR's entry of the built API reference in headless
Chromium (KaTeX from docs/vendor/katex, no network), made with
``mkdocs build --site-dir /tmp/site``, ``python -m http.server --directory /tmp/site`` and
``chromium --headless --no-sandbox --disable-gpu --window-size=1280,2000 --screenshot
http://127.0.0.1:8000/reference/``, cropped to the entry."""

from __future__ import annotations

import doctest
import html
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import catlog

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_api_reference_renders_every_public_name() -> None:
    """Adding a public name means one ``::: catlog.NAME`` line in docs/reference.md (modules
    rendered for their docstring, such as ``catlog.measure``, aside)."""
    rendered = re.findall(r"^::: catlog\.(\w+)$", (ROOT / "docs" / "reference.md").read_text(), re.MULTILINE)
    names = [name for name in rendered if not inspect.ismodule(getattr(catlog, name, None))]
    assert sorted(names) == sorted(catlog.__all__)


def test_readme_links_resolve() -> None:
    links = LINK.findall((ROOT / "README.md").read_text())
    relative = [link.split("#")[0] for link in links if not link.startswith("https://")]
    assert relative, "the README links to the docs"
    assert [link for link in relative if not (ROOT / link).exists()] == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.endswith("python -m pytest -q")]
    assert len(commands) == 1, commands
    assert commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()


def public_docstrings() -> dict[str, str]:
    """The docstring of every public name and of its public methods and properties (``__call__`` included)."""
    docs = {}
    for name in catlog.__all__:
        obj = getattr(catlog, name)
        docs[name] = inspect.getdoc(obj) or ""
        members = vars(obj).items() if inspect.isclass(obj) else ()
        for member, value in members:
            if not member.startswith("_") or member == "__call__":
                docs[f"{name}.{member}"] = (
                    value.__doc__ if isinstance(value, property) else inspect.getdoc(value)
                ) or ""
    return docs


def test_public_docstrings_name_no_private_module_and_no_timing() -> None:
    """Docstrings speak at the API's level: no ``catlog._module`` names, no machine timings (docs/performance.md)."""
    private = {where: re.findall(r"catlog\._\w+", doc) for where, doc in public_docstrings().items()}
    assert {where: names for where, names in private.items() if names} == {}
    timings = {where: re.findall(r"\d\s?(?:ms|MiB|GiB)\b", doc) for where, doc in public_docstrings().items()}
    assert {where: found for where, found in timings.items() if found} == {}


def test_public_docstring_examples_run() -> None:
    """The ``>>>`` examples of every public name run and print what they show."""
    finder, runner = doctest.DocTestFinder(exclude_empty=True), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for name in catlog.__all__:
        for test in finder.find(getattr(catlog, name), f"catlog.{name}", globs={}):
            examples += len(test.examples)
            runner.run(test)
    assert examples >= 10
    assert runner.summarize(verbose=False).failed == 0


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built without the tutorials (they execute code: CI's strict build runs them)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    site = tmp_path_factory.mktemp("site")
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site), strict=False, exclude_docs="tutorials/\n"))
    return site


MATHS = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)


def test_built_html_holds_rendered_maths_markup(built_site: Path) -> None:
    """arithmatex wraps the maths of the pages and of the docstrings, and KaTeX is served with the site."""
    for page in ("reference/index.html", "scater/index.html", "choosing/index.html"):
        html = (built_site / page).read_text()
        assert MATHS.search(html), f"{page} has no maths markup"
        for asset in ("vendor/katex/katex.min.js", "vendor/katex/contrib/auto-render.min.js", "javascripts/katex.js"):
            assert f'{asset}"' in html, f"{page} does not load {asset}"
    # An "Example:" section (singular) renders ">>>" lines as nested quotes; "Examples:" as code.
    assert "<blockquote>" not in (built_site / "reference" / "index.html").read_text()
    assert (built_site / "vendor" / "katex" / "fonts" / "KaTeX_Main-Regular.woff2").is_file()
    assert "fonts.googleapis" not in (built_site / "index.html").read_text()


def test_every_equation_parses_with_katex(built_site: Path) -> None:
    """Each expression of the built pages renders with the vendored KaTeX, errors on (needs node)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    expressions = []
    for page in built_site.rglob("*.html"):
        for kind, body in MATHS.findall(page.read_text()):
            tex = html.unescape(body).strip()
            expressions.append((tex[2:-2], kind == "div", str(page.relative_to(built_site))))
    assert len(expressions) > 20
    script = (
        "const katex = require(process.argv[1]); const bad = [];"
        "for (const [tex, display, page] of JSON.parse(require('fs').readFileSync(0, 'utf8'))) {"
        "  try { katex.renderToString(tex, {displayMode: display, throwOnError: true}); }"
        "  catch (error) { bad.push(`${page}: ${tex}: ${error.message}`); } }"
        "console.log(JSON.stringify(bad));"
    )
    katex = str(ROOT / "docs" / "vendor" / "katex" / "katex.min.js")
    result = subprocess.run([node, "-e", script, katex], input=json.dumps(expressions), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_ci_builds_the_docs_strictly() -> None:
    """CI's docs build is strict and not ``--quiet``: mkdocs 1.6 drops warnings under ``--quiet``
    before strict mode counts them, so a broken link or a tutorial that raises would pass."""
    builds = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "mkdocs build" in line]
    assert len(builds) == 1 and "--strict" in builds[0] and "--quiet" not in builds[0] and " -q" not in builds[0]
    config = (ROOT / "mkdocs.yml").read_text()
    assert "strict: true" in config and "anchors: warn" in config and "markdown-exec" in config


def test_tutorials_are_in_the_menu_and_executed() -> None:
    """Each tutorial page is in the menu and runs its code at build time (``exec="on"`` blocks)."""
    tutorials = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
    config = (ROOT / "mkdocs.yml").read_text()
    assert len(tutorials) == 3
    for page in tutorials:
        assert f"tutorials/{page.name}" in config
        assert page.read_text().count('```python exec="on"') >= 3, page.name
