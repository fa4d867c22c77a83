"""Layers point down: cli -> build -> pipeline / train -> models / manifests -> runtime.

Two checks of what importing actually loads (in a fresh interpreter, so nothing this
test session imported counts) and one static check of every `import` in the package,
function-level imports included, since a lazy import is still a dependency."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dfpipe"

#: what each layer may import besides itself (the package root `dfpipe` imports nothing,
#: so anyone may import it); media builds test clips with the pipeline's writer
BELOW = {
    "runtime": set(),
    "models": {"runtime"},
    "manifests": {"runtime"},
    "pipeline": {"models", "manifests", "runtime"},
    "media": {"pipeline", "models", "manifests", "runtime"},
    "train": {"pipeline", "models", "manifests", "runtime"},
    "build": {"pipeline", "train", "models", "manifests", "runtime"},  # a benchmark: every stage in order
    "cli": {"build", "pipeline", "train", "media", "models", "manifests", "runtime"},
}
#: modules at the package's top: the entry points may use everything, the root nothing
TOP_LEVEL = {"__init__": set(), "__main__": {"cli"}, "demo": set(BELOW)}

def _loaded_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """Modules in or under the layers `prefixes` (`dfpipe.train`, ...) in sys.modules after
    running `code` in a new process."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[:2] in {[p.split('.') for p in prefixes]!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inference_loads_no_training_code():
    code = "import dfpipe.pipeline.synth, dfpipe.pipeline.synth.harmonize"
    assert _loaded_after(code, ("dfpipe.train",)) == []


def test_manifests_load_no_stage_training_or_cli_code():
    code = ("import importlib, pkgutil, dfpipe.manifests as m\n"
            "for info in pkgutil.walk_packages(m.__path__, 'dfpipe.manifests.'):\n"
            "    importlib.import_module(info.name)")
    assert _loaded_after(code, ("dfpipe.pipeline", "dfpipe.train", "dfpipe.cli")) == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every dfpipe module `path` imports, anywhere in the file; relative imports resolved,
    `from dfpipe import x` read as `dfpipe.x` when x is a module."""
    name = _module_name(path).split(".")
    package = name if path.name == "__init__.py" else name[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            for alias in node.names:
                sub = PACKAGE.parent.joinpath(*module.split("."), alias.name)
                if sub.is_dir() or sub.with_suffix(".py").is_file():
                    found.add(f"{module}.{alias.name}")
    return {m for m in found if m.startswith("dfpipe.")}


def _layer(module: str) -> str:
    return module.split(".")[1]


def _violations() -> set[tuple[str, str]]:
    """(file, imported module) for every import that points up or sideways."""
    bad = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE:
            own, allowed = None, TOP_LEVEL[path.stem]
        else:
            own = _layer(_module_name(path))
            allowed = BELOW[own]
        for target in _imported(path):
            layer = _layer(target)
            if layer != own and layer not in allowed:
                bad.add((str(path.relative_to(PACKAGE.parent)), target))
    return bad


def test_every_module_has_a_rule():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert layers <= set(BELOW), f"layers without import rules: {sorted(layers - set(BELOW))}"
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= set(TOP_LEVEL), f"top-level modules without import rules: {sorted(top - set(TOP_LEVEL))}"


def test_the_static_check_sees_lazy_imports():
    assert "dfpipe.train.harmonizer_train" in _imported(PACKAGE / "cli" / "harmonizer.py")


def test_layers_only_point_down():
    found = _violations()
    assert found == set(), "imports against the layers:\n" + "\n".join(f"  {f} imports {m}" for f, m in sorted(found))
