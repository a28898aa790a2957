"""The package's imports, read from its source with ``ast``: no module imports a private
name of another rdcodec module or reaches one through an imported module, and the
modules import each other without a cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import rdcodec

ROOT = Path(rdcodec.__file__).parent  # the package's folder: rdcodec.<path>
BENCH = ROOT / "codec" / "bench"
BENCH_PACKAGE = "rdcodec.codec.bench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("rdcodec", *parts))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[str, str | None, str]]:
    """Every import of the file, at any depth (functions, ``TYPE_CHECKING`` blocks):
    (module, name or None for a plain ``import``, the name it is bound to)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.partition(".")[0]
                found.append((alias.name, None, bound))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                found.append((source, alias.name, alias.asname or alias.name))
    return found


def _is_rdcodec(module: str) -> bool:
    return module == "rdcodec" or module.startswith("rdcodec.")


def _is_module(module: str) -> bool:
    path = ROOT.joinpath(*module.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private_uses(path: Path, only_from: str = "rdcodec") -> list[str]:
    """Private names of rdcodec modules (under ``only_from``) that ``path`` imports, or
    reaches as ``module._name`` through a module it imported."""
    own = _module_name(path)
    problems = []
    modules = {}  # bound name -> the rdcodec module it names
    for source, name, bound in _imports(path):
        if not _is_rdcodec(source):
            continue
        target = source if name is None else f"{source}.{name}"
        if name is not None and _is_module(target):
            modules[bound] = target  # ``from . import runner``: a module, not a name
        elif name is None:
            modules[bound] = source if bound != source.partition(".")[0] else "rdcodec"
        if not (source == only_from or source.startswith(only_from + ".")):
            continue
        hidden = [part for part in (*source.split("."), name or "") if _is_private(part)]
        if source != own and hidden:
            problems.append(f"{own} imports {target}")
    tree = ast.parse(path.read_text("utf-8"), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _is_private(node.attr)
        ):
            target = modules[node.value.id]
            if target != own and (target == only_from or target.startswith(only_from + ".")):
                problems.append(f"{own} uses {target}.{node.attr}")
    return problems


def _sources() -> list[Path]:
    """The package's modules (in an editable install the package folder is the
    repository, so only the code folders and the top-level modules)."""
    paths = [p for folder in ("codec", "cli", "models") for p in (ROOT / folder).rglob("*.py")]
    return sorted([*ROOT.glob("*.py"), *paths])


def test_no_module_imports_private_names_of_another():
    sources = _sources()
    assert ROOT / "codec" / "pipeline.py" in sources and len(sources) > 40
    problems = [p for path in sources for p in _private_uses(path)]
    assert problems == []


def _graph(paths: list[Path], package: str | None = None) -> dict[str, set[str]]:
    names = {_module_name(p) for p in paths} - {package}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = _module_name(path)
        edges = set()
        for source, name, _ in _imports(path):
            # ``from . import atomic`` depends on the module atomic, not on the package
            # (whose __init__ only names what it loads on first use).
            submodule = f"{source}.{name}"
            target = submodule if submodule in names else source
            if target in names and target != module:
                edges.add(target)
        graph[module] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (empty when there is none)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_bench_modules_have_no_import_cycle():
    graph = _graph(sorted(BENCH.glob("*.py")), BENCH_PACKAGE)
    assert f"{BENCH_PACKAGE}.measure" in graph[f"{BENCH_PACKAGE}.runner"]  # the graph is read
    assert _cycle(graph) == []


def test_the_package_has_no_import_cycle():
    graph = _graph(_sources())
    assert "rdcodec.models.gaussian" in graph["rdcodec.models.exact"]  # the graph is read
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_bd_rate_imports_without_torch_or_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys; import rdcodec.codec.bench.bdrate; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
