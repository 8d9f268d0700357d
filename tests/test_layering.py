"""Stages depend downward only: the import graph of ``src/crypto_lakehouse`` (every ``import``,
function-local and ``TYPE_CHECKING`` ones included, read with ``ast``, nothing imported) has no
cycle and no edge between packages outside :data:`ALLOWED`; and only the tests, ``jobs``, ``devtools``,
the CLI and the loopback package itself import the loopback exchange."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "crypto_lakehouse"
NAME = "crypto_lakehouse"

_BASE = {"errors", "config", "durations", "schemas"}
# component -> the components it may import (a component is a sub-package or a top-level module;
# "crypto_lakehouse" is the package's own __init__). Anything not listed is a layering error.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "durations": {"errors"},
    "config": {"errors", "durations"},
    "schemas": {"errors"},
    "storage": {"schemas", "errors", "config"},
    # the real venues' registry and clients (cryptofeed feed classes, ccxt)
    "venues": {"errors"},
    "maintenance": {"storage", *_BASE},
    # the writer compacts as it goes (maintenance); the stream and backfill use the real clients
    "ingest": {"storage", "maintenance", "venues", *_BASE},
    # REST history reaches transform through transform.history.VenueHistory, filled by the caller;
    # what silver may assume of a venue is data: the registry module only (see REGISTRY_ONLY)
    "transform": {"storage", "venues", *_BASE},
    "query": {"storage", *_BASE},
    # the loopback exchange speaks the real venues' protocols; loopback.replay streams a recording
    # through the real ingest path into bronze (a loopback feature, above ingest)
    "loopback": {"venues", "ingest", *_BASE},
    # the package root re-exports settings, errors and (lazily) the read API
    NAME: {"config", "errors", "query"},
    # the composition root: one typed function per job a user can run, over every stage (replaying
    # a recording is a job, so jobs sit above the loopback exchange)
    "jobs": {"storage", "maintenance", "venues", "ingest", "transform", "query", "loopback", NAME, *_BASE},
    # the HTTP query service: reads through query.Lakehouse, tags through jobs, keys and audit
    # rows through storage; the CLI starts it
    "service": {"storage", "query", "jobs", *_BASE},
    # the outermost callers: the demo composes the jobs; the CLI wraps them
    "devtools": {"storage", "maintenance", "venues", "ingest", "transform", "query", "loopback", "jobs", NAME, *_BASE},
    "cli": {
        "storage",
        "maintenance",
        "venues",
        "ingest",
        "transform",
        "query",
        "loopback",
        "jobs",
        "devtools",
        "service",
        NAME,
    }
    | _BASE,
}
# components that may import the venues package's registry (data) but not its clients
REGISTRY_ONLY = {"transform"}
# who may import the loopback exchange (besides tests, which are not scanned here)
LOOPBACK_USERS = {"loopback", "jobs", "devtools", "cli"}


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in ``path``, at any depth; relative imports are
    resolved against ``module``; ``from a import b`` yields ``a.b`` (it may be a module)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def _modules(base: Path) -> dict[str, Path]:
    """Module name -> file, for every ``*.py`` under ``base`` and every compiled module's
    ``*.pyi`` stub (a ``.pyx`` is not Python to parse; its stub names the module and what it
    imports for its types), named from ``base``'s parent."""
    stubs = {_module_name(p, base.parent): p for p in sorted(base.rglob("*.pyi"))}
    return stubs | {_module_name(p, base.parent): p for p in sorted(base.rglob("*.py"))}


def _graph(base: Path, prefix: str) -> dict[str, dict[str, int]]:
    """Module -> {project module it imports: line}, over every ``*.py`` under ``base``."""
    files = _modules(base)
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        for target, line in _imports(path, module):
            if target == prefix or target.startswith(prefix + "."):
                # ``from pkg import name``: the module pkg.name if there is one, else pkg itself
                while target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else NAME


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return _graph(PACKAGE, NAME)


def test_the_graph_sees_function_local_and_type_checking_imports(graph: dict[str, dict[str, int]]) -> None:
    # the CLI imports the demo inside a command; the package root imports query under TYPE_CHECKING
    # and inside __getattr__: if these went unseen, the checks below would prove nothing
    assert f"{NAME}.devtools.demo" in graph[f"{NAME}.cli.demo"]
    assert f"{NAME}.query" in graph[NAME]
    assert set(map(_component, graph)) <= set(ALLOWED), "a new package: add it to ALLOWED with its edges"


def test_no_import_cycles_between_modules(graph: dict[str, dict[str, int]]) -> None:
    cycles = _cycles({m: set(e) for m, e in graph.items()})
    assert not cycles, f"import cycles between modules: {cycles}"


def test_no_import_cycles_between_packages(graph: dict[str, dict[str, int]]) -> None:
    components: dict[str, set[str]] = {}
    for module, edges in graph.items():
        here = _component(module)
        components.setdefault(here, set()).update(c for t in edges if (c := _component(t)) != here)
    assert not _cycles(components), f"import cycles between packages: {_cycles(components)}"


def test_every_dependency_between_packages_is_allowed(graph: dict[str, dict[str, int]]) -> None:
    bad = sorted(
        f"{module} imports {target} (line {line})"
        for module, edges in graph.items()
        for target, line in edges.items()
        if (c := _component(target)) != _component(module) and c not in ALLOWED[_component(module)]
    )
    assert not bad, "dependencies outside the allow-list:\n" + "\n".join(bad)


def test_only_tests_jobs_devtools_the_cli_and_itself_import_the_loopback_exchange() -> None:
    users = [
        f"{module} imports {target} (line {line})"
        for base in (PACKAGE, ROOT / "flows")
        for module, path in _modules(base).items()
        for target, line in _imports(path, module)
        if (target == f"{NAME}.loopback" or target.startswith(f"{NAME}.loopback."))
        and (module.split(".")[0] != NAME or _component(module) not in LOOPBACK_USERS)
    ]
    assert not users, "\n".join(users)


def test_transform_reads_the_venue_registry_but_never_the_clients() -> None:
    """silver asks the registry what it may assume of a venue (pure data); cryptofeed and ccxt
    (``venues.clients``) stay out of transform, whose REST access is the caller's backfiller."""
    graph = _graph(PACKAGE, NAME)
    wrong = [
        f"{module} imports {target} (line {line})"
        for module, edges in graph.items()
        if _component(module) in REGISTRY_ONLY
        for target, line in edges.items()
        if _component(target) == "venues" and target != f"{NAME}.venues.registry"
    ]
    assert not wrong, wrong
