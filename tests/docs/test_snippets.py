"""Every ```python block in README.md and docs/*.md runs as written, or is checked against
the example it is taken from. One test case per block, named ``docs/tasks.md:42`` (the
line of its opening fence).

The first line of a block says what it is:

``# from examples/<path>.py`` (anything after the path is a comment for the reader)
    A fragment of that example, which tests/docs/test_examples.py runs. Every line of
    the block must occur in the example, so the page cannot drift from code that runs.
    Blank lines, comments (whole lines and the ``# ...`` after code) and lines that
    are just ``...`` (elided code) are ignored; indentation is ignored. A line may be
    part of a longer example line when it is a whole expression there: ``result.status``
    occurs in ``print(result.status)``, not in ``result.status_code``. An import line
    matches when the example imports the same names from the same module.

``# <path>.py`` (only a file name, such as ``# myapp/tasks.py`` or ``# test_api.py``)
    One file of a program laid out over several blocks of the same page. Every block of
    the page runs with all of the page's files written next to it. A ``test_*.py`` file
    is run with ``python -m pytest`` (pytest-asyncio in auto mode, as docs/testing.md
    asks); any other file must import cleanly (``python -c "import myapp.tasks"``) and
    leave nothing behind: importing a module must not enqueue, connect or write.

``# not run: <reason>``
    Not run, for the reason given, which is required. Kept rare; the block must still
    compile.

Anything else: a complete program, saved as ``snippet.py`` and run with
``python snippet.py`` in an empty directory, with no ``CONVEYOR_*`` variable set (so
``Conveyor()`` uses ``sqlite:///conveyor.db`` there); it must exit 0. A program that
defines ``main()`` must run it, one that defines ``test_*`` functions must be a
``# test_*.py`` file (else its tests would pass unrun), and one with an
``if __name__ == "__main__":`` guard must also import cleanly: saved as a module, it
prints nothing and writes nothing.

A program or file that mentions a ``redis://`` URL in its code needs Redis: it is
skipped when Redis is down, and fails then with ``CI=true``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.docs.conftest import Launcher
from tests.docs.programs import PYTHON, ROOT, Program

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
FROM_EXAMPLE = re.compile(r"^#\s*from\s+(?P<path>examples/\S+?\.py)\b")
NOT_RUN = re.compile(r"^#\s*not run:(?P<reason>.*)$")
FILE = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\s*$")


@dataclass(frozen=True)
class Block:
    page: str  # "docs/tasks.md"
    line: int  # the line of the opening fence, 1-based
    code: str  # dedented to the fence

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first(self) -> str:
        return self.code.splitlines()[0].strip() if self.code.strip() else ""


def blocks_of(page: Path) -> list[Block]:
    """The ```python blocks of ``page``, also those indented in a list item."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    start: int | None = None
    indent = ""
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if start is None:
            if fence and fence["info"].strip() == "python":
                start, indent = number, fence["indent"]
        elif fence and not fence["info"].strip():
            body = [row.removeprefix(indent) for row in lines[start : number - 1]]
            found.append(Block(str(page.relative_to(ROOT)), start, "\n".join(body) + "\n"))
            start = None
    assert start is None, f"{page.name}:{start}: a ```python block is never closed"
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def files_of(page: str) -> dict[str, str]:
    """The file blocks (``# myapp/tasks.py``) of ``page``, by path."""
    return {
        match["path"]: block.code
        for block in BLOCKS
        if block.page == page
        and not FROM_EXAMPLE.match(block.first)
        and (match := FILE.match(block.first))
    }


def _needs(code: str) -> str | None:
    lines = (code_of(line) for line in code.splitlines())
    return "redis" if any("redis://" in line or "rediss://" in line for line in lines) else None


@dataclass(frozen=True)
class Snippet:
    block: Block

    @property
    def kind(self) -> str:
        first = self.block.first
        if FROM_EXAMPLE.match(first):
            return "fragment"
        if NOT_RUN.match(first):
            return "not run"
        if FILE.match(first):
            return "file"
        return "program"

    @property
    def programs(self) -> tuple[Program, ...]:
        """What to run for this block: nothing for fragments and exempt blocks."""
        block, kind = self.block, self.kind
        files = files_of(block.page)
        needs = _needs(block.code)
        if kind == "program":
            files = {**files, "snippet.py": block.code}
            run = Program(block.id, (PYTHON, "snippet.py"), files, needs=needs)
            if not _has_main_guard(block.code):
                return (run,)
            imported = Program(f"{block.id} import", (PYTHON, "-c", "import snippet"), files)
            return (run, imported)
        if kind == "file":
            path = FILE.match(block.first)["path"]  # type: ignore[index]
            argv: tuple[str, ...]
            if Path(path).name.startswith("test_"):
                argv = (PYTHON, "-m", "pytest", *PYTEST_OPTIONS, path)
            else:
                argv = (PYTHON, "-c", f"import {path.removesuffix('.py').replace('/', '.')}")
            return (Program(block.id, argv, files, needs=needs),)
        return ()


PYTEST_OPTIONS = (
    "-q",
    "-p",
    "no:cacheprovider",
    "-o",
    "asyncio_mode=auto",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)


def _has_main_guard(code: str) -> bool:
    """Whether the module runs its code under ``if __name__ == "__main__":``."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False  # reported by program_faults
    return any(
        isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
        for node in body
    )


def program_faults(code: str) -> list[str]:
    """What keeps a program block from being a good program, read from its source."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"it is not a Python program: {exc}"]
    faults = []
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    if "main" in defined and "main" not in called:
        faults.append("it defines main() but never runs it")
    tests = sorted(name for name in defined if name.startswith("test_"))
    if tests:
        faults.append(f"it defines tests {tests}: name its file ('# test_x.py') to run them")
    return faults


SNIPPETS = [Snippet(block) for block in BLOCKS]


# -- fragments: every line occurs in the example ------------------------------------------


def code_of(line: str) -> str:
    """``line`` without its comment and the whitespace around it."""
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:index].strip()
        index += 1
    return line.strip()


def _imports(tree: ast.AST) -> set[tuple[str, str, str]]:
    """(module, name, bound as) for every import in ``tree``; module is "" for ``import``."""
    found: set[tuple[str, str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found |= {(module, a.name, a.asname or a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {("", a.name, a.asname or a.name) for a in node.names}
    return found


@cache
def _example(path: str) -> tuple[list[str], set[tuple[str, str, str]]]:
    text = (ROOT / path).read_text()
    return [code_of(line) for line in text.splitlines()], _imports(ast.parse(text))


def missing_lines(block: Block, source: str) -> list[str]:
    """The lines of ``block`` that do not occur in the example ``source``."""
    example_lines, example_imports = _example(source)
    missing = []
    for line in block.code.splitlines()[1:]:
        code = code_of(line)
        if not code or code == "...":
            continue
        if code.startswith(("import ", "from ")) and not code.endswith("("):
            try:
                wanted = _imports(ast.parse(code))
            except SyntaxError:
                pass
            else:
                wanted = {w for w in wanted if w[0] != "__future__"}
                if wanted <= example_imports:
                    continue
                missing.append(line)
                continue
        inside = re.compile(r"(?<![\w.])" + re.escape(code) + r"(?![\w.(\[])")
        if not any(code == have or inside.search(have) for have in example_lines):
            missing.append(line)
    return missing


# -- the tests ----------------------------------------------------------------------------


def _param(snippet: Snippet) -> object:
    needs = sorted({program.needs for program in snippet.programs if program.needs})
    marks = [pytest.mark.service(name) for name in needs]
    return pytest.param(snippet, id=snippet.block.id, marks=marks)


@pytest.mark.parametrize("snippet", [_param(s) for s in SNIPPETS])
def test_snippet(snippet: Snippet, launched: Launcher) -> None:
    block = snippet.block
    if snippet.kind == "fragment":
        source = FROM_EXAMPLE.match(block.first)["path"]  # type: ignore[index]
        assert (ROOT / source).is_file(), f"{block.id}: {source} does not exist"
        missing = missing_lines(block, source)
        assert not missing, f"{block.id}: not in {source}:\n" + "\n".join(missing)
        return
    if snippet.kind == "not run":
        reason = NOT_RUN.match(block.first)["reason"].strip()  # type: ignore[index]
        assert reason, f"{block.id}: '# not run:' needs a reason"
        compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    if snippet.kind == "program":
        faults = program_faults(block.code)
        assert not faults, f"{block.id}: " + "; ".join(faults)
    run, *imported = snippet.programs
    outcome = launched.outcome(run)
    assert outcome.returncode == 0, f"{block.id} ({snippet.kind}): {outcome.report()}"
    if run.argv[1] == "-c":  # a module file: importing it does nothing visible
        assert not outcome.left_behind, f"{block.id}: importing it left {outcome.left_behind}"
    for program in imported:  # a program with a main guard is also a clean module
        outcome = launched.outcome(program)
        assert outcome.returncode == 0, f"{block.id}, imported: {outcome.report()}"
        assert not outcome.left_behind, f"{block.id}: importing it left {outcome.left_behind}"
        assert not outcome.stdout, f"{block.id}: importing it printed {outcome.stdout!r}"


def test_python_blocks_are_found() -> None:
    assert len(BLOCKS) >= 50  # the finder still finds the blocks


def test_only_python_fences_hold_python() -> None:
    """A block tagged ``py`` or ``python3`` would escape the tests above."""
    odd = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in PAGES
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if (fence := FENCE.match(line))
        and fence["info"].strip().lower().startswith("py")
        and fence["info"].strip() != "python"
    ]
    assert not odd, f"tag these ```python: {odd}"
