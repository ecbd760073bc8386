"""The package's layers only point down: every import of every module (function-level ones too) is read with ast.

A package may import its own modules and those of packages on a lower layer, never a package on its own layer
or above: so no arrow runs up and no two packages import each other. Inside a package, modules form no cycle.
The tooling beside the library (``repro/``, ``scripts/``, ``experiments/``, ``tests/``) stands above all of it:
it may import gdws, and nothing under gdws/ imports it.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from ahead import Command


PACKAGE = Path(__file__).resolve().parents[1] / "gdws"
#: Top-level packages of the repository that are tooling around the library, not part of it.
TOOLING = {"repro", "scripts", "experiments", "tests"}

#: Bottom first. A package may import only from the layers below its own (not beside it).
LAYERS = (
    ("utils", "errors"),                             # torch-only helpers; Refusal (a run refused with a message)
    ("core",),                                       # the method: allocation, GDWS layer, conversion, alphas
    ("fast", "models", "data", "tracking", "tables"),  # exact fast forms; model zoo; datasets; rows; paper tables
    ("conversion", "metrics", "eval", "train"),      # convert with every budget (latency: fast); size/MACs/FPS;
                                                     # attacks; training recipes
    ("prune",),                                      # pruning baselines (train their masks)
    ("pipeline",),                                   # one Hydra run
    ("cli",),                                        # `gdws convert` / `gdws export`
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
#: What the package's face (gdws/__init__.py) may import: `import gdws` stays light.
FACE_IMPORTS = {"core", "fast", "conversion"}
#: Third-party modules the core may use: torch, and pandas for the conversion report.
CORE_THIRD_PARTY = {"torch", "pandas"}


def module_name(path: Path) -> str:
    """Dotted name of a file under gdws/ (a package's __init__.py is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str | None = None) -> list[tuple[str, int]]:
    """Every module ``path`` imports, anywhere in the file (absolute dotted names), with its line; ``name`` is the
    module's dotted name (default: from its place under gdws/), against which relative imports resolve."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
            # `from gdws.x import y` may name the module gdws.x.y: count it as that module
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names
                      if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").is_file()]
    return found


def layer_of(module: str) -> str:
    """The layer name of a gdws module (its first sub-package or top-level module), '' for the face itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_layer():
    unplaced = sorted({layer_of(m) for m in MODULES} - set(LAYER) - {""})
    assert not unplaced, f"add {unplaced} to LAYERS in {__file__}"


def test_no_import_runs_up_or_sideways():
    wrong = []
    for name, path in MODULES.items():
        here = layer_of(name)
        for target, line in imports_of(path):
            there = layer_of(target) if target.startswith("gdws.") else None
            if there is None or there == here:
                continue
            if here == "":
                ok = there in FACE_IMPORTS
            else:
                ok = there != "" and LAYER[there] < LAYER[here]
            if not ok:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here or 'gdws'}) imports {target}")
    assert not wrong, "imports that run up or sideways:\n" + "\n".join(wrong)


def tooling_imports(modules: dict[str, Path]) -> list[str]:
    """``file:line imports X`` for each import of the tooling (TOOLING) by one of ``modules`` (name -> path)."""
    return [f"{path.name}:{line} imports {target}" for name, path in modules.items()
            for target, line in imports_of(path, name) if target.split(".")[0] in TOOLING]


def test_the_library_never_imports_the_tooling(tmp_path):
    assert tooling_imports(MODULES) == []
    # the check itself: a module that imports the reproduction runner, at the top or inside a function, is caught
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom repro.plan import build_plan\n\ndef f():\n    import repro.runner\n")
    assert tooling_imports({"gdws.bad": bad}) == ["bad.py:2 imports repro.plan", "bad.py:5 imports repro.runner"]


def test_core_imports_only_torch_and_pandas():
    allowed = CORE_THIRD_PARTY | set(sys.stdlib_module_names) | {"gdws"}  # gdws.*: the test above
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
             for name, path in MODULES.items() if layer_of(name) == "core"
             for target, line in imports_of(path) if target.split(".")[0] not in allowed]
    assert not wrong, "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> imported modules) as a path, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_cycle_inside_a_package():
    # a package's __init__ only hands its modules' names on: its own imports are not arrows between modules
    graph = {name: {t for t, _ in imports_of(path) if t in MODULES and t != name and layer_of(t) == layer_of(name)
                    and MODULES[t].name != "__init__.py"}
             for name, path in MODULES.items() if path.name != "__init__.py"}
    assert _cycle(graph) == []


# one interpreter: `import gdws` loads none of the modules banned after it, so the later checks stay sound
LIGHT_IMPORTS = (("gdws", ("hydra", "pytorch_lightning", "lightning", "gdws.pipeline", "gdws.train", "gdws.models")),
                 ("gdws.prune", ("hydra", "gdws.pipeline")))


def fresh_imports(request: pytest.FixtureRequest, folder: Path) -> dict[str, Command]:
    """A fresh interpreter (started with the session: it imports torch and Lightning) importing LIGHT_IMPORTS in
    order and printing, after each, the banned modules it loaded."""
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({name!r}); print({name!r}, *[m for m in {banned!r} if m in sys.modules])\n"
        for name, banned in LIGHT_IMPORTS)
    return {"imports": Command([sys.executable, "-c", code], PACKAGE.parent)}


@pytest.mark.ahead(builder=fresh_imports)
def test_imports_stay_light(ahead_outcomes):
    proc = ahead_outcomes.processes["imports"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:-1] == [name for name, _ in LIGHT_IMPORTS], \
        f"imports that load too much:\n{proc.stdout}"
