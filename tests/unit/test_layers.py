"""The architecture of docs/architecture.md, checked on the real source with ``ast`` (nothing is imported).

* (a) the card layer (``card/`` outside ``card/virtual``) imports neither ``card.virtual`` nor
  ``digisign_web`` nor ``aiohttp``, and ``card/virtual`` imports ``card`` but not the server (D32);
* (b) ``digisign_web.scs``, ``.signing`` and ``.dialog`` import no ``aiohttp`` and nothing from
  ``digisign_web.web`` or ``digisign_web.cli``; ``signing`` imports nothing from ``scs`` or ``dialog``;
  ``scs`` reaches the dialogs only through ``digisign_web.dialog.protocol``;
* (c) only the command line (and ``python -m digisign_web``'s ``__main__``) imports ``digisign_web.cli``;
* (d) the modules of ``card`` and ``digisign_web`` have no import cycle;
* (e) every decision or fact id cited (``D7``, ``F3``, ``D14a``; a range ``D17–D21`` at both ends) in card/,
  digisign_web/, static/, bench/, scripts/, tests/, docs/ or README.md is a heading of docs/decisions.md
  (runs of hex bytes such as ATRs, and ruff codes after ``noqa``, are not citations);
* (f) nothing there cites the reference documents that live outside the repository (decisions.md replaced
  them).

The layering checks (a)–(c) count every import: module level, inside ``if TYPE_CHECKING:`` and inside
functions (a lazy import is still a dependency). The cycle check (d) counts only imports that run when the
module is imported (module level, outside ``if TYPE_CHECKING:``): a function-level import runs after every
module has finished importing, so it cannot take part in an import-time cycle.

Each checker is a plain function over source text, and :func:`test_checkers_catch_violations` feeds it a
synthetic tree that breaks every rule, so a checker that silently stopped finding anything fails too.
"""

from __future__ import annotations

import ast
import functools
import gc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
PACKAGES = ("card", "digisign_web")

# (e) and (f) read these: the code, the page scripts, the tools, the tests and the documentation.
CITING_DIRS = ("card", "digisign_web", "static", "bench", "scripts", "tests", "docs")
CITING_FILES = ("README.md",)
TEXT_SUFFIXES = {".py", ".js", ".mjs", ".html", ".css", ".md", ".sh", ".toml", ".cfg", ".txt"}
SKIP_DIRS = {"__pycache__", "node_modules", "data", "artifacts"}  # tests/data: recordings; artifacts: screenshots
DECISIONS = "docs/decisions.md"

OUTSIDE_DOCUMENTS = re.compile(r"shared/reference|real-cards\.md|fineid-card\.md|test-stack\.md|scs-interface\.md")
CITATION = re.compile(r"\b[DF]\d{1,3}a?\b")
HEADING = re.compile(r"^#{2,4}\s+([DF]\d{1,3}a?)\s*:", re.MULTILINE)
# Not citations: ruff codes after "noqa" (F401) and runs of hex bytes such as ATRs ("12 00 F6 82 90 00").
NOQA = re.compile(r"noqa\b[:\s]*[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*")
HEX_RUN = re.compile(r"\b[0-9A-Fa-f?]{2}(?: [0-9A-Fa-f?]{2}){2,}\b")


# --- the module graph ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. card.virtual.source
    path: str  # relative to the repository, for messages
    is_package: bool
    source: str


@dataclass(frozen=True)
class Import:
    module: Module  # the importing module
    target: str  # the imported module: the longest known module for our packages, the written name otherwise
    line: int
    kind: str  # "top" (runs on import), "typing" (under if TYPE_CHECKING) or "lazy" (inside a function)

    def __str__(self) -> str:
        return f"{self.module.path}:{self.line}: {self.module.name} imports {self.target} ({self.kind})"


def load_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Module]:
    """Every ``.py`` file under ``packages``, by dotted module name."""
    modules = {}
    for package in packages:
        if not (root / package).is_dir():
            continue
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if SKIP_DIRS.intersection(rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, rel.as_posix(), is_package, path.read_text(encoding="utf-8"))
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Import statements with how they run: ``top``, ``typing`` or ``lazy``. Only statements are visited
    (an import is a statement), which keeps this a small fraction of the parse time."""
    todo: list[tuple[ast.AST, str]] = [(tree, "top")]
    while todo:
        node, kind = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                todo.append((child, "lazy"))
            elif isinstance(child, ast.If) and kind == "top" and _is_type_checking(child.test):
                todo += [(ast.Module(body=child.body, type_ignores=[]), "typing"),
                         (ast.Module(body=child.orelse, type_ignores=[]), "top")]
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                todo.append((child, kind))


def _known(name: str, modules: dict[str, Module]) -> str:
    """``name`` cut back to the longest module we have (``card.errors.CardError`` → ``card.errors``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def _parse(module: Module) -> ast.Module:
    """``ast.parse`` with the cyclic garbage collector paused: an AST is many small objects, and collections
    triggered while it is built cost about 40 % of the parse time (the test must stay well under a second)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(module.source, filename=module.path)
    finally:
        if enabled:
            gc.enable()


def imports(modules: dict[str, Module]) -> list[Import]:
    """Every import of every module, resolved to module names (relative imports included)."""
    found = []
    for module in modules.values():
        tree = _parse(module)
        for node, kind in _walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = module.name.split(".")
                    if not module.is_package:
                        package.pop()
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                # "from package import submodule" depends on the submodule; "from module import name" on the module
                targets = [_known(f"{base}.{alias.name}", modules) for alias in node.names]
            for target in dict.fromkeys(targets):
                found.append(Import(module, _known(target, modules), node.lineno, kind))
    return found


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


# --- (a)–(c): who may import whom ---------------------------------------------------------------------------

# (importers, importers exempted, forbidden targets, targets allowed among the forbidden ones, why)
RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], str], ...] = (
    (("card",), ("card.virtual",), ("card.virtual", "digisign_web", "aiohttp"), (),
     "(a) the card layer knows neither the emulator nor the server nor HTTP (D32)"),
    (("card.virtual",), (), ("digisign_web", "aiohttp"), (),
     "(a) the virtual card is a card, not part of the server (D32)"),
    (("digisign_web.scs", "digisign_web.signing", "digisign_web.dialog"), (),
     ("aiohttp", "digisign_web.web", "digisign_web.cli"), (),
     "(b) scs, signing and dialog know no HTTP framework and nothing above them"),
    (("digisign_web.signing",), (), ("digisign_web.scs", "digisign_web.dialog"), (),
     "(b) signing sits below scs and the dialogs"),
    (("digisign_web.scs",), (), ("digisign_web.dialog",), ("digisign_web.dialog.protocol",),
     "(b) scs uses a dialog only through its protocol"),
    (("card", "digisign_web", "bench"), ("digisign_web.cli", "digisign_web.__main__"), ("digisign_web.cli",), (),
     "(c) only the command line (and python -m digisign_web) uses the command line"),
)


def layer_violations(found: Iterable[Import]) -> list[str]:
    out = []
    for imp in found:
        for importers, exempt, forbidden, allowed, why in RULES:
            if _under(imp.module.name, importers) and not _under(imp.module.name, exempt) \
                    and _under(imp.target, forbidden) and not _under(imp.target, allowed):
                out.append(f"{imp}: {why}")
    return out


# --- (d): no import cycles ----------------------------------------------------------------------------------


def cycles(found: Iterable[Import], modules: dict[str, Module]) -> list[str]:
    """Strongly connected components of the import-time graph (Tarjan), each with its edges."""
    edges: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for imp in found:
        if imp.kind == "top" and imp.module.name in edges and imp.target in modules:
            edges[imp.module.name].setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                components.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    out = []
    for component in components:
        members = set(component)
        links = "; ".join(str(imp) for name in component for target, imp in edges[name].items() if target in members)
        out.append(f"cycle among {', '.join(component)}: {links}")
    return out


# --- (e), (f): citations ------------------------------------------------------------------------------------


def text_files(root: Path) -> dict[str, str]:
    """The files that may cite decisions, by relative path (this test file excepted: it names bad examples)."""
    paths = [root / name for name in CITING_FILES if (root / name).is_file()]
    for directory in CITING_DIRS:
        if (root / directory).is_dir():
            paths += sorted(p for p in (root / directory).rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
    out = {}
    for path in paths:
        rel = path.relative_to(root)
        if path.resolve() == THIS or SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        out[rel.as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return out


def defined_ids(decisions: str) -> set[str]:
    return set(HEADING.findall(decisions))


def undefined_citations(files: dict[str, str], defined: set[str]) -> list[str]:
    out = []
    for path, text in files.items():
        if path == DECISIONS:
            continue
        if not CITATION.search(text):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if not CITATION.search(line):
                continue
            line = HEX_RUN.sub(" ", NOQA.sub(" ", line))
            out += [f"{path}:{number}: {cited} is not a heading of {DECISIONS}"
                    for cited in CITATION.findall(line) if cited not in defined]
    return out


def outside_citations(files: dict[str, str]) -> list[str]:
    return [f"{path}:{number}: cites {match.group()} (not in this repository): {line.strip()[:100]}"
            for path, text in files.items()
            for number, line in enumerate(text.splitlines(), 1)
            for match in [OUTSIDE_DOCUMENTS.search(line)] if match]


# --- the real tree ------------------------------------------------------------------------------------------


@functools.cache
def _tree() -> tuple[dict[str, Module], tuple[Import, ...]]:
    modules = load_modules(ROOT, (*PACKAGES, "bench"))
    return modules, tuple(imports(modules))


def test_tree_is_found() -> None:
    """The checks below see the real packages (a wrong ROOT would make them pass vacuously)."""
    modules, found = _tree()
    for name in ("card.token", "card.virtual", "digisign_web.web.app", "digisign_web.scs.service",
                 "digisign_web.signing.formats"):
        assert name in modules
    assert any(imp.target == "card.token" for imp in found)


def test_layers() -> None:
    """(a)–(c): dependencies point down: web → scs → signing → card; card/virtual → card."""
    _, found = _tree()
    assert layer_violations(found) == []


def test_no_import_cycles() -> None:
    """(d): no cycle among the import-time imports of card/ and digisign_web/."""
    modules, found = _tree()
    assert cycles(found, {n: m for n, m in modules.items() if _under(n, PACKAGES)}) == []


def test_cited_decisions_exist() -> None:
    """(e): every D/F id cited in code, tests and docs is defined in docs/decisions.md."""
    files = text_files(ROOT)
    defined = defined_ids(files[DECISIONS])
    assert {"D1", "D14a", "F1"} <= defined
    assert undefined_citations(files, defined) == []


def test_no_citations_outside_the_repository() -> None:
    """(f): the reference pack was replaced by docs/decisions.md; nothing may point at it any more."""
    assert outside_citations(text_files(ROOT)) == []


# --- the checkers themselves --------------------------------------------------------------------------------


def _synthetic(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return load_modules(root, (*PACKAGES, "bench"))


def test_checkers_catch_violations(tmp_path: Path) -> None:
    """A tree that breaks each rule once: every checker reports exactly the planted faults."""
    modules = _synthetic(tmp_path, {
        "card/__init__.py": "from card.token import Token\n",
        # (a), lazy; and a cycle through a name from the package's __init__
        "card/token.py": "from card import CardError\n\ndef f():\n    from card.virtual import VirtualCard\n",
        "card/errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aiohttp\n",  # (a) typing
        "card/readers.py": "from ..digisign_web import settings\n",  # (a), relative
        "card/virtual/__init__.py": "from card.token import Token\nfrom digisign_web import settings\n",  # (a)
        "digisign_web/__init__.py": "",
        "digisign_web/__main__.py": "from digisign_web.cli.main import main\n",  # allowed: the entry point
        "digisign_web/settings.py": "",
        "digisign_web/cli/__init__.py": "",
        "digisign_web/cli/main.py": "from digisign_web.web import app\n",
        "digisign_web/web/__init__.py": "",
        "digisign_web/web/app.py": "import aiohttp\nfrom digisign_web.scs import service\n",
        "digisign_web/scs/__init__.py": "",
        "digisign_web/scs/service.py": "from . import queue\nfrom ..web.app import build_app\n"  # (b), cycle
                                       "from digisign_web.dialog.protocol import Dialog\n"  # allowed
                                       "from digisign_web.dialog.auto import AutoDialog\n",  # (b) not the protocol
        "digisign_web/dialog/protocol.py": "",
        "digisign_web/dialog/auto.py": "from digisign_web.dialog.protocol import Dialog\n",
        "digisign_web/scs/queue.py": "from digisign_web.scs.service import x\n",  # cycle: service ↔ queue
        "digisign_web/signing/__init__.py": "",
        "digisign_web/signing/formats.py": "from digisign_web.scs import errors\nimport aiohttp.web\n",  # (b) twice
        "digisign_web/dialog/__init__.py": "from digisign_web.cli import main\n",  # (b) and (c)
        "bench/run.py": "from digisign_web.cli.main import main\n",  # (c)
    })
    found = imports(modules)
    faults = layer_violations(found)
    expected = [
        ("card/token.py:4", "card.virtual", "(a)"), ("card/errors.py:3", "aiohttp", "(a)"),
        ("card/readers.py:1", "digisign_web.settings", "(a)"),
        ("card/virtual/__init__.py:2", "digisign_web.settings", "(a) the virtual card"),
        ("digisign_web/scs/service.py:2", "digisign_web.web.app", "(b)"),
        ("digisign_web/scs/service.py:4", "digisign_web.dialog.auto", "(b) scs uses a dialog only"),
        ("digisign_web/signing/formats.py:1", "digisign_web.scs", "(b) signing"),
        ("digisign_web/signing/formats.py:2", "aiohttp.web", "(b)"),
        ("digisign_web/dialog/__init__.py:1", "digisign_web.cli.main", "(b)"),
        ("digisign_web/dialog/__init__.py:1", "digisign_web.cli.main", "(c)"),
        ("bench/run.py:1", "digisign_web.cli.main", "(c)"),
    ]
    for where, target, rule in expected:
        assert any(f.startswith(where + ":") and f"imports {target} " in f and rule in f for f in faults), \
            (where, target, rule, faults)
    assert len(faults) == len(expected), faults

    loops = cycles(found, modules)
    assert len(loops) == 2, loops  # card ↔ card.token (a name from the package's __init__), service ↔ queue
    assert any("digisign_web.scs.queue, digisign_web.scs.service" in loop for loop in loops), loops
    assert any("card, card.token" in loop for loop in loops), loops
    lazy_only = _synthetic(tmp_path / "lazy", {"card/__init__.py": "", "card/a.py": "import card.b\n",
                                               "card/b.py": "def f():\n    import card.a\n"})
    assert cycles(imports(lazy_only), lazy_only) == []

    files = {"docs/decisions.md": "### D1: x\n### D14a: y\n### F2: z\n",
             "card/x.py": "# D1, D14a and F2 (docs/decisions.md); ATR 3B D2 18 00 F6; import os  # noqa: F401\n"
                          "# D14 and F99 are not defined\n",
             "README.md": "see `shared/reference/scs-interface.md` and real-cards.md §2\n"}
    defined = defined_ids(files["docs/decisions.md"])
    assert defined == {"D1", "D14a", "F2"}
    assert undefined_citations(files, defined) == ["card/x.py:2: D14 is not a heading of docs/decisions.md",
                                                   "card/x.py:2: F99 is not a heading of docs/decisions.md"]
    assert [f.split(" (")[0] for f in outside_citations(files)] == ["README.md:1: cites shared/reference"]
