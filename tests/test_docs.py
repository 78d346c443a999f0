"""What keeps the documentation (docs/, built by `make docs`) true.

- Code on a page is either included from a file in examples/ that a test
  runs (a ``--8<--`` snippet, so the code shown is the code tested) or a
  doctest, which runs here. Shell, console, nginx, Caddy and text blocks
  are free; anything else fails.
- Every test a page names exists, and so does every file it names.
- The reference has an entry for every name of ``fastrapi.__all__``.
- The examples page names every file in examples/.
- The README's first example is examples/hello.py, which a test runs.

`mkdocs build --strict` (`make docs`, part of `make test`) checks the rest:
links and anchors, included files, and mkdocstrings' reading of docstrings.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import fastrapi
import fastrapi.testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FREE_LANGUAGES = {"sh", "console", "nginx", "caddy", "text"}
CODE_LANGUAGES = {"python", "pycon", "js"}
# Markdown (not code) a page may include whole or in part.
MARKDOWN_INCLUDES = {"CHANGELOG.md", "SECURITY.md", "bench/results/latest.md"}
SNIPPET = re.compile(
    r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[a-z][-_0-9a-z]*)|(?P<lines>(?::-?\d*){1,2}))?"$'
)
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line} ({self.language or 'no language'})"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, dedented as a list item's are."""
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, ticks = len(opening["indent"]), opening["ticks"]
        language = opening["info"].split()[0] if opening["info"].strip() else ""
        body = []
        index += 1
        while not re.match(rf"^ {{{indent}}}{ticks}\s*$", lines[index]):
            body.append(lines[index][indent:])
            index += 1
        found.append(Block(page, index - len(body), language, "\n".join(body) + "\n"))
        index += 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def test_the_pages_have_code() -> None:
    assert len(PAGES) >= 30
    assert sum(block.language in CODE_LANGUAGES for block in ALL_BLOCKS) >= 40


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=str)
def test_every_code_block_is_included_from_a_tested_example_or_is_a_doctest(block: Block) -> None:
    if block.language in FREE_LANGUAGES:
        return
    assert block.language in CODE_LANGUAGES, f"{block}: say which language, one of {sorted(FREE_LANGUAGES)}"
    if ">>>" in block.text:
        assert block.language == "pycon", f"{block}: a doctest block is ```pycon"
        return
    lines = block.text.strip().splitlines()
    assert lines and all(SNIPPET.match(line) for line in lines), (
        f'{block}: code is included from examples/ (--8<-- "examples/....py") or is a doctest (>>>), '
        f"not written on the page:\n{block.text}"
    )
    for line in lines:
        check_snippet(SNIPPET.match(line), block)  # type: ignore[arg-type]  # matched just above


def check_snippet(match: re.Match[str], where: object) -> None:
    path = match["path"]
    assert path.startswith("examples/"), f"{where}: code comes from examples/, not {path}"
    source = ROOT / path
    assert source.is_file(), f"{where}: {path} does not exist"
    assert source.stem in sources_of_tests(), f"{where}: no test in tests/ or conformance/ runs {path}"
    if match["section"]:
        text = source.read_text(encoding="utf-8")
        for end in ("start", "end"):
            assert f"--8<-- [{end}:{match['section']}]" in text, (
                f"{where}: {path} has no section {match['section']}"
            )


def test_markdown_includes_are_the_known_files() -> None:
    for page in PAGES:
        in_code = {line for block in blocks(page) for line in block.text.splitlines()}
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("--8<--") and line.strip() not in {code.strip() for code in in_code}:
                match = SNIPPET.match(line.strip())
                assert match is not None, f"{page}: {line}"
                assert match["path"] in MARKDOWN_INCLUDES, f"{page}: includes {match['path']} as markdown"


DOCTEST_PAGES = sorted({block.page for block in ALL_BLOCKS if ">>>" in block.text})


@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_the_doctests_pass(page: Path) -> None:
    # A page's doctests run in order with shared names, as one session would.
    names: dict[str, object] = {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for block in blocks(page):
        if ">>>" in block.text:
            test = doctest.DocTestParser().get_doctest(block.text, names, str(block), str(page), block.line)
            runner.run(test, out=report.append, clear_globs=False)
            names.update(test.globs)  # the DocTest ran on a copy of them
    assert runner.failures == 0, "".join(report)
    assert runner.tries > 0


# -- what the pages name exists --------------------------------------------------


@cache
def sources_of_tests() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("tests", "conformance")
        for path in (ROOT / folder).rglob("*.py")
    )


@cache
def defined_tests() -> dict[str, set[str]]:
    """Each test file (relative path) and the test functions it defines."""
    found = {}
    for folder in ("tests", "conformance"):
        for path in (ROOT / folder).rglob("test_*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
            }
            found[path.relative_to(ROOT).as_posix()] = names
    return found


WRITINGS = [*PAGES, ROOT / "SECURITY.md", ROOT / "README.md"]


@pytest.mark.parametrize("page", WRITINGS, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_test_and_file_a_page_names_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    functions = defined_tests()
    everywhere = set().union(*functions.values())
    for path, name in re.findall(r"((?:tests|conformance)/[\w/]+\.py)::(test_\w+)", text):
        assert name in functions.get(path, set()), f"{page.name}: {path}::{name} does not exist"
    for name in re.findall(r"`(test_\w+)`", text):
        assert name in everywhere, f"{page.name}: no test is named {name}"
    for path in re.findall(r"`((?:examples|tests|conformance|fastrapi|bench|docs)/[\w./-]*\w)`", text):
        assert (ROOT / path).exists(), f"{page.name}: {path} does not exist"


def test_the_reference_has_every_public_name() -> None:
    reference = "\n".join(path.read_text(encoding="utf-8") for path in (DOCS / "reference").glob("*.md"))
    entries = set(re.findall(r"^::: ([\w.]+)", reference, re.MULTILINE))
    missing = {name for name in fastrapi.__all__ if f"fastrapi.{name}" not in entries}
    assert not missing, f"docs/reference has no entry for {sorted(missing)}"
    testing = {
        name
        for name, value in vars(fastrapi.testing).items()
        if isinstance(value, type)
        and value.__module__ == "fastrapi.testing"
        and not name.startswith("_")
        and name not in {"RequestOptions"}
    }
    missing = {name for name in testing if f"fastrapi.testing.{name}" not in entries}
    assert not missing, f"docs/reference/testing.md has no entry for {sorted(missing)}"


def test_the_examples_page_names_every_example() -> None:
    page = (DOCS / "examples.md").read_text(encoding="utf-8")
    examples = ROOT / "examples"
    for path in sorted(examples.rglob("*")):
        if path.suffix in {".py", ".html"} and "__pycache__" not in path.parts:  # not ruff.toml
            name = path.relative_to(examples).as_posix()
            assert f"`{name}`" in page, f"docs/examples.md does not list examples/{name}"


def test_the_readme_begins_with_hello_py() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert first is not None
    assert first[1] == (ROOT / "examples" / "hello.py").read_text(encoding="utf-8")


def test_the_exception_tree_is_the_real_hierarchy() -> None:
    page = (DOCS / "reference" / "exceptions.md").read_text(encoding="utf-8")
    tree = page.split("```text\n", 1)[1].split("```", 1)[0]
    parents: list[tuple[int, type]] = []  # (column, class) of the branch so far
    drawn = set()
    for line in tree.splitlines():
        found = re.search(r"[A-Za-z]\w+", line)
        assert found is not None
        column, name = found.start(), found[0]
        cls = getattr(fastrapi, name, None) or getattr(builtins, name)
        while parents and parents[-1][0] >= column:
            parents.pop()
        if parents:
            parent = parents[-1][1]
            # fastrapi's own derive from the class drawn above them; the
            # standard library's may have steps between (OSError).
            direct = cls.__module__.startswith("fastrapi")
            assert cls.__bases__ == (parent,) if direct else issubclass(cls, parent), (
                f"{name} is drawn under {parent.__name__}"
            )
        parents.append((column, cls))
        drawn.add(name)
    public = {name for name in fastrapi.__all__ if isinstance(getattr(fastrapi, name), type)}
    exceptions = {name for name in public if issubclass(getattr(fastrapi, name), BaseException)}
    assert exceptions <= drawn, f"not drawn: {sorted(exceptions - drawn)}"
