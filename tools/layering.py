"""The project's import contracts, checked from the source (ast, no import): `python3 tools/layering.py`.

docs/architecture.md draws the layers: engine (metal3_pivot) <- components <- program (__main__.py),
with the policy pack beside the components and the lab, tests and benchmarks on top. Nothing checked
that until this file; `make lint` runs it (through tests/test_layering.py, which also shows that a
wrong-way import fails it). Standard library only, so it runs before any bootstrap.

Every import counts, also inside functions and `if TYPE_CHECKING:` blocks: a circle hidden in a function
is still a circle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: top-level packages (and the program module) the contracts speak about
PACKAGES = ("metal3_pivot", "components", "policies", "lab", "langhost", "tests", "benchmarks", "tools")
PROGRAM = "__main__"
ENGINE = "metal3_pivot"

#: who may not import whom: importer package -> forbidden top-level modules (and why)
FORBIDDEN: dict[str, tuple[set[str], str]] = {
    ENGINE: ({"pulumi", "pulumi_kubernetes", "pulumi_policy", "components", "policies", "lab", "langhost", "tests",
              "benchmarks", PROGRAM},
             "the engine is plain Python at the bottom: it imports neither Pulumi nor anything above it"),
    "components": ({"policies", "lab", "langhost", "tests", "benchmarks", PROGRAM},
                   "components sit between the engine and the program"),
    "policies": ({"components", "lab", "langhost", "tests", "benchmarks", PROGRAM},
                 "the policy pack is independent: it reads the resources' properties, not the code that made them"),
    "lab": ({"tests", "benchmarks", "policies", PROGRAM}, "the lab serves tests and benchmarks, never the reverse"),
    "benchmarks": ({"tests", PROGRAM}, "benchmarks use the lab, not the test suite"),
    "langhost": ({ENGINE, "components", "policies", "lab", "tests", "benchmarks", PROGRAM},
                 "the language host only runs programs"),
}
#: packages that must use the engine's public face (`from metal3_pivot import ...`), not its modules
PUBLIC_FACE_ONLY = ("components", "policies", "lab", "benchmarks", PROGRAM)


@dataclass(frozen=True)
class Import:
    module: str          # the importing module, dotted ("metal3_pivot.mover")
    target: str          # what it imports, dotted ("metal3_pivot.preflight")
    line: int
    name: str = ""       # `from <package> import <name>`: the name taken from the package itself

    @property
    def importer_package(self) -> str:
        return self.module.split(".", 1)[0]


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import statement of a module, relative ones resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            for alias in node.names:
                # `from pkg import x`: x may be a submodule or a name; the checks tell them apart
                yield Import(module, f"{base}.{alias.name}" if base else alias.name, node.lineno,
                             alias.name if "." not in base else "")


def tree(root: Path) -> dict[str, tuple[Path, list[Import]]]:
    """The project's modules under `root`: name -> (file, imports)."""
    found: dict[str, tuple[Path, list[Import]]] = {}
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    if (root / f"{PROGRAM}.py").exists():
        files.append(root / f"{PROGRAM}.py")
    for path in files:
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        name = module_name(root, path)
        found[name] = (path, list(imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")))
    return found


def _engine_module(target: str, modules: dict[str, tuple[Path, list[Import]]]) -> str | None:
    """The engine module an import target names (`metal3_pivot.plan.Plan` -> `metal3_pivot.plan`)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in modules and name.startswith(ENGINE):
            return name
    return None


def public_names(root: Path) -> set[str]:
    """What the engine's __init__.py lists in `__all__`."""
    init = root / ENGINE / "__init__.py"
    if not init.exists():
        return set()
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {str(e.value) for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)}
    return set()


def violations(root: Path = ROOT) -> list[str]:
    modules = tree(root)
    public = public_names(root)
    out: list[str] = []
    for name, (path, imports) in sorted(modules.items()):
        pkg = name.split(".", 1)[0]
        where = path.relative_to(root)
        for imp in imports:
            top = imp.target.split(".", 1)[0]
            forbidden, why = FORBIDDEN.get(pkg, (set(), ""))
            if top in forbidden and top != pkg:
                out.append(f"{where}:{imp.line}: {name} imports {imp.target}: {why}")
            if pkg in PUBLIC_FACE_ONLY and top == ENGINE:
                inner = _engine_module(imp.target, modules)
                through_face = imp.target == f"{ENGINE}.{imp.name}" and imp.name in public
                if inner is not None and inner != ENGINE and not through_face:
                    out.append(f"{where}:{imp.line}: {name} imports {imp.target}: outside the engine, use its "
                               "public face (`from metal3_pivot import ...`, metal3_pivot/__init__.py)")
            if imp.target == "tests.conftest" or imp.target.startswith(("tests.conftest.", "tests.test_")):
                out.append(f"{where}:{imp.line}: {name} imports {imp.target}: shared test helpers live in the "
                           "test kit (tests/kit/); conftest.py and test modules are not libraries")
    out += [f"import circle in the engine: {' -> '.join(c)}" for c in engine_cycles(modules)]
    return out


def engine_cycles(modules: dict[str, tuple[Path, list[Import]]]) -> list[list[str]]:
    """Circles between the engine's modules (its __init__, the public face, is left out: it imports all)."""
    graph: dict[str, set[str]] = {}
    for name, (_, imports) in modules.items():
        if name.startswith(f"{ENGINE}."):
            targets = {_engine_module(imp.target, modules) for imp in imports}
            graph[name] = {t for t in targets if t is not None and t not in (ENGINE, name)}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append([*path[path.index(m):], m])
            elif m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return cycles


def main() -> int:
    found = violations()
    for v in found:
        print(v, file=sys.stderr)
    print(f"layering: {len(found)} violation(s)" if found else "layering: OK", file=sys.stderr if found else sys.stdout)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
