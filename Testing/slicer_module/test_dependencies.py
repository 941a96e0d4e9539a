"""The first-run promise: in a Slicer where torch, MONAI, safetensors and matplotlib are not
installed yet, the module's code loads and says what is missing (so the "install the
dependencies?" dialog can appear); and the install plan takes the pins of pyproject.toml.

``LungLiverSeg.py`` itself loads under Slicer's own Python layer (v5.10.0 and v5.12.3, from
../shared/slicer-reference) on slicer-core's real MRML, with stand-ins only for what is not under
test and cannot be installed here: PythonQt's ``qt``/``ctk`` (nothing calls them while loading)
and ``@parameterNodeWrapper`` (it needs real Qt widgets).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from factories import REPO_ROOT
from LungLiverSegLib.paths import LIBRARY
from LungLiverSegLib.slicer_module import dependencies
from packaging.requirements import Requirement

# What a fresh Slicer lacks of the dependencies (it ships numpy, scipy, Pillow and SimpleITK).
NOT_INSTALLED = ("torch", "monai", "safetensors", "matplotlib")

# Every finder on sys.meta_path stops seeing NOT_INSTALLED, as in a Slicer before the first
# install: ``import torch`` raises ModuleNotFoundError and ``find_spec("torch")`` is None.
HIDE = """
import importlib.abc, sys

NOT_INSTALLED = {not_installed!r}


class NotInstalled(importlib.abc.MetaPathFinder):
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in NOT_INSTALLED:
            return None
        return self.finder.find_spec(name, path, target)

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()


sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
"""

SLICER_REFERENCE = REPO_ROOT.parent / "shared" / "slicer-reference"
NEEDS_SLICER_CORE = pytest.mark.skipif(
    importlib.util.find_spec("slicer") is None, reason="needs slicer-core (pip install 'slicer-core==5.11.*')"
)

IMPORT_ALL = """
import importlib, json, pkgutil
import LungLiverSegLib.slicer_module as package

names = sorted(info.name for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."))
for name in names:
    importlib.import_module(name)
from LungLiverSegLib.slicer_module.dependencies import missing_dependencies

print(json.dumps({"modules": names, "missing": missing_dependencies(), "slicer": "slicer" in sys.modules}))
"""


def run_without_dependencies(code: str) -> subprocess.CompletedProcess[str]:
    script = HIDE.format(not_installed=NOT_INSTALLED) + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.slicer
@NEEDS_SLICER_CORE
def test_the_slicer_side_loads_and_names_what_is_missing_before_torch_is_installed():
    result = run_without_dependencies(IMPORT_ALL)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    expected = sorted(f"LungLiverSegLib.slicer_module.{path.stem}" for path in module_files())
    assert report["modules"] == expected
    assert report["slicer"], "slicer-core was not imported: the MRML bridge was not really loaded"
    assert set(report["missing"]) == set(NOT_INSTALLED)


def test_the_hiding_itself_works():
    """Without this, the test above could pass with torch silently importable."""
    result = run_without_dependencies("import torch")
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def module_files() -> list[Path]:
    return [path for path in (LIBRARY / "slicer_module").glob("*.py") if path.name != "__init__.py"]


LOAD_MODULE_FILE = """
import importlib.util, types


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


for name in ("qt", "ctk"):
    sys.modules[name] = types.ModuleType(name)
import slicer

load("slicer.i18n", {python!r} + "/i18n.py")
load("slicer.ScriptedLoadableModule", {python!r} + "/ScriptedLoadableModule.py")
wrapper = sys.modules["slicer.parameterNodeWrapper"] = types.ModuleType("slicer.parameterNodeWrapper")
wrapper.parameterNodeWrapper = lambda cls: cls

from LungLiverSegLib.slicer_module.scene import create_headless_scene

slicer.mrmlScene = create_headless_scene()
module = load("LungLiverSeg", {module_file!r})
logic = module.LungLiverSegLogic()
assert logic.scene is slicer.mrmlScene, logic.scene
assert logic.moduleName == "LungLiverSeg" and not logic.is_running
print("loaded")
"""


@pytest.mark.slicer
@NEEDS_SLICER_CORE
@pytest.mark.parametrize("version", ["v5.10.0", "v5.12.3"])
def test_the_module_file_loads_and_builds_its_logic_before_torch_is_installed(version: str):
    python = SLICER_REFERENCE / version / "Base" / "Python" / "slicer"
    if not (python / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer's Python layer not found at {python}")
    module_file = REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py"
    result = run_without_dependencies(
        LOAD_MODULE_FILE.format(python=str(python), module_file=str(module_file))
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["loaded"]


def test_required_imports_and_what_slicer_ships_cover_pyproject():
    """Each dependency is either checked (and installed) by the module or comes with Slicer."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        names = {Requirement(r).name.lower() for r in tomllib.load(file)["project"]["dependencies"]}
    shipped_with_slicer = {"numpy", "scipy", "pillow"}  # REQUIRED_IMPORTS' docstring says so
    checked = {name.lower() for name in dependencies.REQUIRED_IMPORTS}
    assert checked | shipped_with_slicer == names
    assert not checked & shipped_with_slicer


def test_install_plan_uses_the_pins_of_pyproject():
    requirements = dependencies.pinned_requirements()
    assert requirements["monai"].startswith("monai==")
    assert dependencies.missing_dependencies() == []
    plan = dependencies.install_plan(["torch", "monai", "SimpleITK", "safetensors"], requirements)
    assert plan.torch_requirement == requirements["torch"].removeprefix("torch")
    assert plan.pip_requirements == (requirements["monai"], requirements["safetensors"])
    assert dependencies.install_plan([], requirements).empty


def test_requirement_names_are_read_as_pip_reads_them(tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["Torch ==2.13.0", "monai[nibabel]>=1.4", '
        "\"safetensors; python_version >= '3.8'\"]\n"
    )
    assert dependencies.pinned_requirements(pyproject) == {
        "torch": "Torch ==2.13.0",
        "monai": "monai[nibabel]>=1.4",
        "safetensors": "safetensors; python_version >= '3.8'",
    }


def test_missing_pyproject_means_unpinned_installs(tmp_path: Path):
    requirements = dependencies.pinned_requirements(tmp_path / "pyproject.toml")
    assert requirements == {}
    plan = dependencies.install_plan(["torch", "monai"], requirements)
    assert plan == dependencies.InstallPlan("", ("monai",))
