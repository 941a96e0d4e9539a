"""What the module's child processes import can be there in a user's Slicer (review §6).

The children (``python -m LungLiverSegLib.cli segment`` and ``python -m LungLiverSegTraining
train``, run by ``PythonSlicer``) see Slicer's Python: what Slicer bundles plus what the module's
install puts there (``dependencies.REQUIRED_IMPORTS``). A static walk from both entry points
follows every import of the two packages, those inside functions included (a lazy import fails
just the same, only later), and names each outside package with the line that imports it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from factories import REPO_ROOT
from LungLiverSegLib.cli.train_request import preset_names
from LungLiverSegLib.slicer_module import dependencies
from LungLiverSegLib.slicer_module.process import child_environment

ROOTS = {"LungLiverSegLib": REPO_ROOT / "LungLiverSeg", "LungLiverSegTraining": REPO_ROOT / "Training"}
CHILD_ENTRY_POINTS = ("LungLiverSegLib.cli.__main__", "LungLiverSegTraining.__main__")
SLICER_BUNDLES = {"numpy", "scipy", "SimpleITK", "PIL", "pydicom", "requests", "packaging"}
"""Import names of what Slicer 5.10/5.12 ship (``SuperBuild/External_python-*.cmake``)."""


def module_file(name: str) -> Path | None:
    """The source file of one of our modules (a package's ``__init__.py``), or None."""
    root = ROOTS.get(name.partition(".")[0])
    if root is None:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines under ``if TYPE_CHECKING:``: never imported at run time."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_modules(name: str, path: Path) -> list[tuple[str, int]]:
    """(module, line) for every run-time import in ``path`` (module ``name``), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found.append((base, node.lineno))
            found += [
                (f"{base}.{alias.name}", node.lineno)
                for alias in node.names
                if module_file(f"{base}.{alias.name}")
            ]
    return found


def import_closure(entry_points: tuple[str, ...]) -> dict[str, str]:
    """Outside top-level package -> the first ``file:line`` that imports it, over all of our modules
    reachable from ``entry_points`` (a dotted import also loads each parent package)."""
    seen, outside = set(), {}
    pending = list(entry_points)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        for imported, line in imported_modules(name, path):
            parts = imported.split(".")
            if parts[0] not in ROOTS:
                outside.setdefault(parts[0], f"{path.relative_to(REPO_ROOT)}:{line}")
                continue
            pending += [
                ".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))
            ]
    return outside


def not_available_in_slicer(outside: dict[str, str], installed: set[str]) -> dict[str, str]:
    allowed = set(sys.stdlib_module_names) | SLICER_BUNDLES | installed
    return {name: where for name, where in outside.items() if name not in allowed}


def test_the_walk_reaches_the_training_and_segmentation_code():
    """Without this, a walk that stopped early would pass the check below."""
    outside = import_closure(CHILD_ENTRY_POINTS)
    assert {"torch", "monai", "numpy", "SimpleITK", "matplotlib"} <= set(outside)


def test_every_package_the_children_import_is_bundled_with_slicer_or_installed_by_the_module():
    outside = import_closure(CHILD_ENTRY_POINTS)
    assert not_available_in_slicer(outside, set(dependencies.REQUIRED_IMPORTS)) == {}


def test_a_package_left_out_of_the_install_is_named_with_its_import():
    """§6 as it was: matplotlib imported by training, not in the install plan."""
    installed = set(dependencies.REQUIRED_IMPORTS) - {"matplotlib"}
    missing = not_available_in_slicer(import_closure(CHILD_ENTRY_POINTS), installed)
    assert list(missing) == ["matplotlib"]
    assert re.fullmatch(r"\S+\.py:\d+", missing["matplotlib"]), missing


def test_train_is_a_command_of_the_child_whenever_presets_are_listed():
    """The panel lists presets (Train possible) only where ``python -m LungLiverSegTraining train``
    runs, with the child's own environment (``child_environment``)."""
    assert preset_names(), "no presets listed: the check below would not apply"
    result = subprocess.run(
        [sys.executable, "-m", "LungLiverSegTraining", "train", "--help"],
        capture_output=True,
        text=True,
        env=child_environment(),
        cwd=REPO_ROOT.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--epochs" in result.stdout
