"""The package's layers: a pure floor that imports no training stack, and no import that runs upward
(tensor floor → losses, rounding, metrics, instances, backbones → data, training → outputs, deploy →
the command-line layer → entry points)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dsc

PACKAGE = Path(dsc.__file__).parent
LAYERS = [
    {"dsc", "dsc.labels", "dsc.ops", "dsc.contracts"},
    {"dsc.losses", "dsc.rounding", "dsc.metrics", "dsc.instances", "dsc.backbones"},
    {"dsc.data", "dsc.training"},
    {"dsc.outputs", "dsc.deploy"},
    {"dsc.cli"},
    {"dsc.train", "dsc.evaluate", "dsc.predict", "dsc.export", "dsc.table1", "dsc.demo", "dsc.sweep_report"},
]
FLOOR = [
    "dsc.labels",
    "dsc.ops",
    "dsc.contracts",
    "dsc.losses",
    "dsc.rounding",
    "dsc.metrics",
    "dsc.instances",
]
TRAINING_STACK = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf")


def layer_of(module: str) -> int:
    """The layer of a dsc module: that of its package below ``dsc`` (``dsc.losses.spectral`` →
    ``dsc.losses``), or of the module itself at the top level."""
    parts = module.split(".")
    name = ".".join(parts[:2])
    for number, layer in enumerate(LAYERS):
        if name in layer:
            return number
    raise AssertionError(f"{module} belongs to no layer of tests/test_layers.py: add its package there")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every dsc import that runs at import time (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names[:1] if name.split(".")[0] == "dsc"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "dsc"]
    return found


def test_no_import_runs_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imported_modules(path):
            if imported != "dsc" and layer_of(imported) > layer_of(importer):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_the_layer_check_finds_an_upward_import(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text(
        "from dsc.training import DeepSpectralClustering\nif TYPE_CHECKING:\n    import dsc.cli\n"
    )
    assert imported_modules(fake) == [(1, "dsc.training")]
    assert layer_of("dsc.training.module") > layer_of("dsc.losses.spectral")


def test_the_top_level_holds_entry_points_contracts_and_labels_only():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == {"__init__", "contracts", "labels"} | {name.split(".")[1] for name in LAYERS[-1]}


@pytest.mark.parametrize("module", FLOOR)
def test_the_floor_imports_no_training_stack(module):
    check = (
        f"import sys, {module}; "
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {TRAINING_STACK!r} "
        "or name.startswith('dsc.data')))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"import {module} loads {result.stdout.strip()}"
