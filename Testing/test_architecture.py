"""The walls between the layers, read from the import graph of the source (``ast``, nothing imported).

Two kinds of import count differently:

* every import (module level, inside a function, under ``if TYPE_CHECKING:``) counts for the
  "never imports" rules and the layers: a lazy import is still a dependency;
* only eager imports (executed when the module is imported: module level, not inside a function
  nor under ``TYPE_CHECKING``), followed from module to module, count for "loads torch at import".
  Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so those are followed too.

The layer table below is the one drawn in ``LungLiverSegLib/__init__.py`` and docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE_PAGE = REPO_ROOT / "docs" / "ARCHITECTURE.md"
CORE = "LungLiverSegLib"
TRAINING = "LungLiverSegTraining"
SLICER_SIDE = f"{CORE}.slicer_module"
BROWSER = f"{CORE}.browser"

# Lowest first. A module may import from its own layer and the layers below, never above. Entries
# name a module or a package (the package's modules belong to the same layer).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        tuple(
            f"{CORE}.{name}"
            for name in (
                "errors",
                "labels",
                "files",
                "jsonio",
                "progress",
                "tables",
                "svg_plot",
                "paths",
                "geometry",
            )
        ),
    ),
    ("formats", (f"{CORE}.imageio", f"{CORE}.bundle")),
    ("work", (f"{CORE}.segmentation", f"{CORE}.evaluation", f"{CORE}.dataset")),
    ("composition", (f"{CORE}.api", f"{CORE}.demo", f"{CORE}.worklist")),
    ("front ends", (f"{CORE}.cli", SLICER_SIDE)),
    ("browser app", (BROWSER,)),
    ("training", (TRAINING,)),
)

GUI_MODULES = (
    "slicer",
    "vtk",
    "vtkmodules",
    "qt",
    "ctk",
    "SampleData",
    "trame",
    "trame_server",
    "trame_slicer",
)
HEAVY_MODULES = ("torch", "monai", "safetensors")

# What must not load torch, MONAI or safetensors when imported: the Slicer module file (Slicer
# loads it before the dependencies are installed), the CLI's parser (``--help``, ``models``,
# ``evaluate``) and the plug-in it loads through the entry point, and the libraries those use.
# ``x.*`` means the package x and every module in it.
TORCH_FREE_AT_IMPORT = (
    "LungLiverSeg",
    f"{CORE}.cli.*",
    f"{CORE}.errors",
    f"{CORE}.labels",
    f"{CORE}.files",
    f"{CORE}.jsonio",
    f"{CORE}.progress",
    f"{CORE}.tables",
    f"{CORE}.svg_plot",
    f"{CORE}.worklist",
    f"{CORE}.worklist.store",
    f"{CORE}.worklist.scan",
    f"{CORE}.worklist.effort",
    f"{CORE}.paths",
    f"{CORE}.geometry",
    f"{CORE}.bundle.spec",
    f"{CORE}.bundle.json_fields",
    f"{CORE}.bundle.model_json",
    f"{CORE}.bundle.card",
    f"{CORE}.bundle.catalogue",
    f"{CORE}.evaluation.*",
    f"{CORE}.imageio.*",
    f"{SLICER_SIDE}.*",
    f"{BROWSER}.*",
    f"{TRAINING}.cli",
)


# --- the import graph ----------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported module, where (``path:line``) and whether it runs when its importer is imported."""

    source: str
    where: str
    target: str
    eager: bool


class ImportGraph:
    """Modules of some source trees and what each one imports, resolved to module names.

    ``packages`` maps a top-level package name to its folder; ``files`` adds single files under a
    name of their own (a script, the Slicer module file). ``root`` is what paths are shown against.
    """

    def __init__(self, root: Path, packages: dict[str, Path], files: dict[str, Path] | None = None) -> None:
        self.root = root
        self.paths: dict[str, Path] = dict(files or {})
        self.packages: set[str] = set()
        for name, folder in packages.items():
            for path in sorted(folder.rglob("*.py")):
                parts = [name, *path.relative_to(folder).with_suffix("").parts]
                if parts[-1] == "__init__":
                    parts.pop()
                    self.packages.add(".".join(parts))
                self.paths[".".join(parts)] = path
        self.imports = {name: list(self._resolved_imports(name)) for name in self.paths}

    def _resolved_imports(self, name: str) -> Iterator[Import]:
        path = self.paths[name]
        package = name if name in self.packages else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, base, level, names, eager in _raw_imports(tree):
            if level:  # relative: level 1 is the importer's own package
                anchor = package.split(".")[: len(package.split(".")) - level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            where = f"{self.shown(name)}:{line}"
            targets = [base] if names is None else [self._from_target(base, n) for n in names]
            for target in dict.fromkeys(targets):
                yield Import(name, where, target, eager)

    def _from_target(self, base: str, name: str) -> str:
        """``from base import name`` imports the submodule ``base.name`` when there is one."""
        return f"{base}.{name}" if f"{base}.{name}" in self.paths else base

    def shown(self, name: str) -> str:
        """The file of module ``name``, relative to ``root``."""
        return self.paths[name].relative_to(self.root).as_posix()

    def modules(self, pattern: str) -> list[str]:
        """Module names matching ``pattern`` (exact, or ``x.*`` for the package x and all under it)."""
        if pattern.endswith(".*"):
            return [name for name in self.paths if _within(name, pattern[:-2])]
        return [pattern] if pattern in self.paths else []

    def executed_by(self, target: str) -> list[str]:
        """The modules of this graph that ``import target`` runs: its packages, then itself."""
        parts = target.split(".")
        return [m for m in (".".join(parts[:n]) for n in range(1, len(parts) + 1)) if m in self.paths]


RawImport = tuple[int, str, int, tuple[str, ...] | None, bool]
"""(line, module, relative level, imported names or None for ``import x``, eager)"""


def _raw_imports(tree: ast.Module) -> list[RawImport]:
    """Every import statement of a module, in source order."""
    found: list[RawImport] = []

    def visit(node: ast.AST, eager: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, 0, None, eager) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append((node.lineno, node.module or "", node.level, names or None, eager))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for child in ast.iter_child_nodes(node):
                visit(child, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, eager)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child, eager)

    visit(tree, True)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# --- the rules: each returns one message per violation -------------------------------------


def forbidden_imports(graph: ImportGraph, importers: Iterable[str], forbidden: Sequence[str]) -> list[str]:
    """Every import, eager or lazy, by one of ``importers`` of a module in or under ``forbidden``."""
    return [
        f"{imp.where}: {imp.source} imports {imp.target}"
        for name in importers
        for imp in graph.imports[name]
        if any(_within(imp.target, banned) for banned in forbidden)
    ]


def layer_of(name: str, layers: Sequence[tuple[str, Sequence[str]]]) -> int | None:
    """Rank of the layer holding module ``name`` (0 = lowest), None when no entry holds it."""
    for rank, (_, entries) in enumerate(layers):
        if any(_within(name, entry) for entry in entries):
            return rank
    return None


def layer_violations(graph: ImportGraph, layers: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Imports of a higher layer, and modules that no layer holds (the table must place them)."""
    tops = {entry.split(".")[0] for _, entries in layers for entry in entries}
    messages = []
    for name in graph.paths:
        if name.split(".")[0] not in tops or name in tops:  # a top package holds only its map
            continue
        rank = layer_of(name, layers)
        if rank is None:
            messages.append(f"{graph.shown(name)}:1: {name} is in no layer of the table")
            continue
        for imp in graph.imports[name]:
            target_rank = layer_of(imp.target, layers)
            if target_rank is not None and target_rank > rank:
                messages.append(
                    f"{imp.where}: {name} ({layers[rank][0]}) imports {imp.target} ({layers[target_rank][0]})"
                )
    return messages


def eager_reach(graph: ImportGraph, start: str, forbidden: Sequence[str]) -> list[str]:
    """The modules that import a ``forbidden`` one when ``start`` is imported, each with the shortest
    chain of imports from ``start`` to its first such import (one message per module, not per line).
    """
    chain: dict[str, list[Import]] = {name: [] for name in graph.executed_by(start)}
    queue = deque(chain)
    messages = []
    while queue:
        name = queue.popleft()
        eager = [imp for imp in graph.imports[name] if imp.eager]
        banned = next((imp for imp in eager if any(_within(imp.target, b) for b in forbidden)), None)
        if banned is not None:
            hops = "; ".join(f"{hop.where} imports {hop.target}" for hop in [*chain[name], banned])
            messages.append(f"importing {start} loads {banned.target}: {hops}")
        for imp in eager:
            for module in graph.executed_by(imp.target):
                if module not in chain:
                    chain[module] = [*chain[name], imp]
                    queue.append(module)
    return messages


def undocumented_packages(graph: ImportGraph) -> list[str]:
    """Packages whose ``__init__`` docstring does not say what may be imported there."""
    messages = []
    for name in sorted(graph.packages):
        path = graph.paths[name]
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if not re.search(r"\bmay import\b", docstring, re.IGNORECASE):
            messages.append(
                f"{graph.shown(name)}:1: {name}'s docstring does not say what may be imported there"
            )
    return messages


def _report(messages: list[str]) -> str:
    return f"{len(messages)} violation(s):\n" + "\n".join(messages)


# --- the real tree -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    scripts = REPO_ROOT / "Training" / "scripts"
    files = {f"Training.scripts.{path.stem}": path for path in sorted(scripts.glob("*.py"))}
    files["LungLiverSeg"] = REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py"
    packages = {
        CORE: REPO_ROOT / "LungLiverSeg" / CORE,
        TRAINING: REPO_ROOT / "Training" / TRAINING,
    }
    return ImportGraph(REPO_ROOT, packages, files)


def test_core_outside_the_gui_front_ends_and_training_never_import_slicer_vtk_qt_or_trame(
    graph: ImportGraph,
) -> None:
    headless = [
        name
        for name in graph.paths
        if (_within(name, CORE) and not _within(name, SLICER_SIDE) and not _within(name, BROWSER))
        or _within(name, TRAINING)
        or name.startswith("Training.")
    ]
    messages = forbidden_imports(graph, headless, GUI_MODULES)
    assert messages == [], _report(messages)


def test_core_never_imports_training(graph: ImportGraph) -> None:
    messages = forbidden_imports(graph, graph.modules(f"{CORE}.*"), [TRAINING])
    assert messages == [], _report(messages)


def test_training_never_imports_the_gui_front_ends(graph: ImportGraph) -> None:
    """Training runs headless on a GPU box; the Slicer side and the browser app drive it as a child
    process."""
    messages = forbidden_imports(graph, graph.modules(f"{TRAINING}.*"), [SLICER_SIDE, BROWSER])
    assert messages == [], _report(messages)


def test_the_core_never_imports_monai(graph: ImportGraph) -> None:
    """Segmenting runs MONAI's networks and sliding window in plain torch (``bundle.unets``,
    ``segmentation.sliding_window``): importing MONAI costs more than a second of every run."""
    messages = forbidden_imports(graph, graph.modules(f"{CORE}.*"), ["monai"])
    assert messages == [], _report(messages)


def test_the_cli_never_imports_the_slicer_side(graph: ImportGraph) -> None:
    """Both are front ends; the Slicer side runs the CLI as a child process, never the reverse."""
    messages = forbidden_imports(graph, graph.modules(f"{CORE}.cli.*"), [SLICER_SIDE, BROWSER])
    assert messages == [], _report(messages)


def test_modules_import_only_their_own_layer_and_the_layers_below(graph: ImportGraph) -> None:
    messages = layer_violations(graph, LAYERS)
    assert messages == [], _report(messages)


def test_every_entry_of_the_layer_table_exists(graph: ImportGraph) -> None:
    stale = [entry for _, entries in LAYERS for entry in entries if not graph.modules(f"{entry}.*")]
    assert stale == [], f"in the layer table but not in the tree: {stale}"


@pytest.mark.parametrize("pattern", TORCH_FREE_AT_IMPORT)
def test_importing_does_not_load_torch_monai_or_safetensors(graph: ImportGraph, pattern: str) -> None:
    modules = graph.modules(pattern)
    assert modules, f"{pattern} matches no module: update TORCH_FREE_AT_IMPORT"
    messages = [message for name in modules for message in eager_reach(graph, name, HEAVY_MODULES)]
    assert messages == [], _report(messages)


def test_every_package_says_what_may_be_imported_there(graph: ImportGraph) -> None:
    messages = undocumented_packages(graph)
    assert messages == [], _report(messages)


def test_the_layer_map_and_the_architecture_page_name_every_part_of_the_core(graph: ImportGraph) -> None:
    """Each subpackage and top-level module of the core appears, as ``name``, in both drawings."""
    parts = {name.split(".")[1] for name in graph.modules(f"{CORE}.*") if name != CORE}
    layer_map = ast.get_docstring(ast.parse(graph.paths[CORE].read_text(encoding="utf-8"))) or ""
    drawings = {
        "LungLiverSegLib/__init__.py": layer_map,
        "docs/ARCHITECTURE.md": ARCHITECTURE_PAGE.read_text(encoding="utf-8"),
    }
    missing = [
        f"{where} does not name {part}"
        for where, text in drawings.items()
        for part in sorted(parts)
        if not re.search(rf"`{part}(\.py|/)?`", text)
    ]
    assert missing == [], "\n".join(missing)


def test_the_architecture_page_draws_every_file_of_the_tree(graph: ImportGraph) -> None:
    """Its "The tree" section names every module file of the core and of Training, and no other."""
    page = ARCHITECTURE_PAGE.read_text(encoding="utf-8")
    tree = page[page.index("## The tree") :].split("\n## ", 1)[0]
    drawn = set(re.findall(r"\b\w+\.py\b", tree)) - {"LungLiverSeg.py", "factories.py"}
    files = {
        path.name for name, path in graph.paths.items() if _within(name, CORE) or _within(name, TRAINING)
    }
    assert (sorted(files - drawn), sorted(drawn - files)) == ([], []), "(not drawn, drawn but absent)"


# --- the checker itself, on a tree that breaks every rule once ----------------------------

SYNTHETIC_TREE = {
    "core/__init__.py": '"""Layers: low < high. May import nothing."""\n',
    "core/low/__init__.py": "",  # no docstring
    "core/low/base.py": "def later():\n    import torch\n",
    "core/low/gui.py": "import os\n\nimport slicer.util\n",
    "core/low/upward.py": "def later():\n    from core.high import top\n",
    "core/low/plugin.py": "def later():\n    from train import cli\n",
    "core/low/typed.py": (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import torch\nelse:\n    import numpy\n"
    ),
    "core/high/__init__.py": '"""High. May import: low."""\n\nfrom . import heavy\n',
    "core/high/heavy.py": "from safetensors.torch import load_file\n",
    "core/high/top.py": "from ..low import base\nfrom core.low.typed import numpy\n",
    "core/high/orphan/__init__.py": '"""Orphan. May import: low."""\n',
    "train/__init__.py": '"""Training. May import the core."""\n',
    "train/cli.py": "from core.high import top\n",
}
SYNTHETIC_LAYERS = (
    ("low", ("core.low",)),
    ("high", ("core.high.top", "core.high.heavy", "core.high")),
    ("train", ("train",)),
)


@pytest.fixture()
def synthetic(tmp_path: Path) -> ImportGraph:
    for relative, text in SYNTHETIC_TREE.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return ImportGraph(tmp_path, {"core": tmp_path / "core", "train": tmp_path / "train"})


def test_checker_reports_a_gui_import_with_file_line_and_module(synthetic: ImportGraph) -> None:
    assert forbidden_imports(synthetic, synthetic.modules("core.*"), GUI_MODULES) == [
        "core/low/gui.py:3: core.low.gui imports slicer.util"
    ]


def test_checker_reports_a_lazy_import_of_training_by_the_core(synthetic: ImportGraph) -> None:
    assert forbidden_imports(synthetic, synthetic.modules("core.*"), ["train"]) == [
        "core/low/plugin.py:2: core.low.plugin imports train.cli"
    ]


def test_checker_reports_an_upward_lazy_import_and_accepts_downward_and_relative_ones(
    synthetic: ImportGraph,
) -> None:
    assert layer_violations(synthetic, SYNTHETIC_LAYERS) == [
        "core/low/plugin.py:2: core.low.plugin (low) imports train.cli (train)",
        "core/low/upward.py:2: core.low.upward (low) imports core.high.top (high)",
    ]
    assert [imp.target for imp in synthetic.imports["core.high.top"]] == ["core.low.base", "core.low.typed"]


def test_checker_reports_a_module_missing_from_the_layer_table(synthetic: ImportGraph) -> None:
    layers = (("low", ("core.low",)), ("high", ("core.high.top", "core.high.heavy")))
    assert [message for message in layer_violations(synthetic, layers) if "no layer" in message] == [
        "core/high/__init__.py:1: core.high is in no layer of the table",
        "core/high/orphan/__init__.py:1: core.high.orphan is in no layer of the table",
    ]


def test_checker_follows_eager_imports_through_packages_and_skips_lazy_and_type_only_ones(
    synthetic: ImportGraph,
) -> None:
    assert eager_reach(synthetic, "train.cli", HEAVY_MODULES) == [
        "importing train.cli loads safetensors.torch: train/cli.py:1 imports core.high.top; "
        "core/high/__init__.py:3 imports core.high.heavy; core/high/heavy.py:1 imports safetensors.torch"
    ]
    assert eager_reach(synthetic, "core.low.base", HEAVY_MODULES) == []
    assert eager_reach(synthetic, "core.low.typed", HEAVY_MODULES) == []


def test_checker_reports_a_package_whose_docstring_does_not_say_what_may_be_imported(
    synthetic: ImportGraph,
) -> None:
    assert undocumented_packages(synthetic) == [
        "core/low/__init__.py:1: core.low's docstring does not say what may be imported there"
    ]
