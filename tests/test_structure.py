"""Structure checks of the package (issue 13): no import cycles, analysis never imports the harness, the
raw denoiser is reachable only inside models/ and the meter, and the decoding loop's functions stay short.
Imports are read from the source (function-local imports count), not executed."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "boe_eval"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that `name` imports anywhere in its source (the longest known prefix of each)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles. A package's
    __init__ importing its own submodules is not a cycle of concern and is left out."""
    graph = {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + "."))} for m, ts in graph.items()}
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_boe_eval_modules():
    assert _cycles(_graph()) == []


def test_analysis_reads_rows_without_importing_the_harness():
    graph = _graph()
    offenders = {m: sorted(t for t in ts if t.startswith("boe_eval.harness"))
                 for m, ts in graph.items() if m.startswith("boe_eval.analysis")}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_the_decoding_loop_imports_no_sampler_module():
    graph = _graph()
    offenders = {m: sorted(t for t in ts if t.startswith("boe_eval.samplers"))
                 for m, ts in graph.items() if m.startswith("boe_eval.decoding")}
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def _attribute_uses(path: Path, names: set[str]) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in names]


def test_the_raw_denoiser_is_reachable_only_inside_models_and_the_meter():
    """Samplers and diagnostics get a MeteredDenoiser; its model lives in `_denoiser`, which nothing outside the
    meter reads, and no sampler or analysis module reaches for a `.denoiser` attribute."""
    meter = PACKAGE / "decoding" / "meter.py"
    private = {str(p.relative_to(PACKAGE)): lines for p in PACKAGE.rglob("*.py")
               if p != meter and (lines := _attribute_uses(p, {"_denoiser"}))}
    assert private == {}
    public = {str(p.relative_to(PACKAGE)): lines
              for folder in ("samplers", "analysis") for p in (PACKAGE / folder).rglob("*.py")
              if (lines := _attribute_uses(p, {"denoiser"}))}
    assert public == {}


def test_no_function_in_decoding_is_longer_than_a_page():
    long = []
    for path in (PACKAGE / "decoding").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
