"""The documentation builds without a broken link, and what it says about the code is what the code does.

`mkdocs build --strict` turns every link to a missing page (or a page left out of the nav) into a
failure; the README, which GitHub renders outside the site, has its relative links checked here. The
import table of docs/architecture.md is compared with the imports of src/transferlab, so the
picture of the package cannot drift from it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "src" / "transferlab"
IMPORT_TABLE = re.compile(r"<!-- imports:start -->\n(.*?)<!-- imports:end -->", re.S)


def test_the_docs_build_strictly_with_a_page_for_every_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for page in sorted((ROOT / "docs").glob("*.md")):
        built = tmp_path / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"docs/{page.name} was not built (is it in mkdocs.yml's nav?)"


def test_every_relative_link_in_the_readme_names_a_file():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    assert relative, "the README links to no docs page"
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def package_imports() -> dict[str, tuple[set[str], set[str]]]:
    """Each sub-package (`data/`) or top-level module (`cli.py`) -> (what it imports, what only its type hints import).

    Every import statement counts, also inside functions, since the package imports its heavy
    parts late; imports under `if TYPE_CHECKING:` are kept apart.
    """
    units = {p.name + "/" if p.is_dir() else p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file() or p.suffix == ".py"}
    found: dict[str, tuple[set[str], set[str]]] = {unit: (set(), set()) for unit in units}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        source = parts[0] + "/" if len(parts) > 1 else parts[0]
        tree = ast.parse(path.read_text())
        hints_only = {
            id(node) for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "transferlab" else [f"transferlab.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")
                if top[0] != "transferlab" or len(top) < 2:
                    continue
                target = next(u for u in (top[1] + "/", top[1] + ".py") if u in units)
                if target != source:
                    found[source][1 if id(node) in hints_only else 0].add(target)
    return {unit: (runtime, hints - runtime) for unit, (runtime, hints) in found.items()}


def test_the_architecture_page_lists_the_imports_the_package_has():
    def cell(names: set[str]) -> str:
        return ", ".join(f"`{n}`" for n in sorted(names))

    expected = [f"| `{unit}` | {cell(runtime)} | {cell(hints)} |" for unit, (runtime, hints) in sorted(package_imports().items())]
    page = (ROOT / "docs" / "architecture.md").read_text()
    table = IMPORT_TABLE.search(page)
    assert table, "docs/architecture.md has no <!-- imports:start --> ... <!-- imports:end --> table"
    shown = [line for line in table.group(1).splitlines() if line.startswith("| `")]
    assert shown == expected, "docs/architecture.md's import table differs from the code; its rows now are:\n" + "\n".join(expected)
