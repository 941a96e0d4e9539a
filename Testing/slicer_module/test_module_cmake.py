"""``LungLiverSeg/CMakeLists.txt``: its script list is the library's tree (a new file cannot be
forgotten), and the extension it installs finds its presets, models and pins where ``paths`` looks.

CMake cannot run here, so these checks read the file: the scripts listed in
``MODULE_PYTHON_SCRIPTS`` and the ``install()`` rules, laid out as Slicer installs them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import REPO_ROOT

MODULE_DIR = REPO_ROOT / "LungLiverSeg"
CMAKE = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
MODULE_NAME = re.search(r"set\(MODULE_NAME (\w+)\)", CMAKE).group(1)
INSTALL_RULE = re.compile(
    r"install\((DIRECTORY|FILES) \$\{CMAKE_CURRENT_SOURCE_DIR\}/(\S+)\s+"
    r"DESTINATION \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}(\S*)"
)


def listed_scripts() -> list[str]:
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS\n(.*?)\n\s*\)", CMAKE, re.DOTALL).group(1)
    return [line.strip().replace("${MODULE_NAME}", MODULE_NAME) for line in block.splitlines()]


def test_the_script_list_is_the_module_and_every_library_file():
    library = MODULE_DIR / f"{MODULE_NAME}Lib"
    on_disk = [
        path.relative_to(MODULE_DIR).as_posix()
        for path in library.rglob("*.py")
        if "__pycache__" not in path.parts
    ]
    scripts = listed_scripts()
    assert len(scripts) == len(set(scripts)), "a script is listed twice"
    assert sorted(scripts) == sorted([f"{MODULE_NAME}.py", *on_disk])


def install_extension(target: Path) -> Path:
    """What Slicer installs: the listed scripts, then each ``install()`` rule (folders linked)."""
    for script in listed_scripts():
        (target / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MODULE_DIR / script, target / script)
    rules = INSTALL_RULE.findall(CMAKE)
    assert {kind for kind, _, _ in rules} == {"DIRECTORY", "FILES"}, "the install rules were not read"
    for kind, source, destination in rules:
        source_path = (MODULE_DIR / source).resolve()
        folder = target / destination.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "DIRECTORY":
            (folder / source_path.name).symlink_to(source_path, target_is_directory=True)
        else:
            shutil.copyfile(source_path, folder / source_path.name)
    return target


PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from LungLiverSegLib import paths
from LungLiverSegLib.cli.train_request import preset_names

print(json.dumps({
    "library": str(paths.LIBRARY),
    "models": str(paths.bundled_models_dir()),
    "pyproject": str(paths.pyproject()),
    "presets": preset_names(),
    "path": [str(entry) for entry in paths.python_path_entries()],
}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="links folders")
def test_an_installed_extension_finds_its_models_pins_and_presets(tmp_path: Path):
    """``-S``: no site-packages, so nothing can come from the source tree's editable install."""
    extension = install_extension(tmp_path / "qt-scripted-modules")
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(extension)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["library"] == str(extension / f"{MODULE_NAME}Lib")
    assert found["models"] == str(extension / "Resources" / "Models")
    assert found["pyproject"] == str(extension / "pyproject.toml")
    assert found["path"] == [str(extension)], "Training sits beside the library: nothing to add"
    presets = REPO_ROOT / "Training" / "LungLiverSegTraining" / "presets"
    assert found["presets"] == sorted(path.stem for path in presets.glob("*.json"))
    assert found["presets"], "no presets found in the source tree either"


def test_the_in_slicer_test_is_registered_with_ctest():
    """§15: without it CTest never runs ``LungLiverSegTest`` (Slicer's template and SlicerNNUnet
    register the module script the same way)."""
    testing = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", CMAKE, re.DOTALL)
    assert testing, "no if(BUILD_TESTING) block"
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in testing.group(1)
    assert f"class {MODULE_NAME}Test(ScriptedLoadableModuleTest)" in (
        MODULE_DIR / f"{MODULE_NAME}.py"
    ).read_text(encoding="utf-8")


BUILD_STUB = """
set(Slicer_REQUIRED_PYTHON_VERSION "3.12.10")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.10/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/use.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
"""
# Slicer's macro copies the listed scripts into the build tree (at build time; here at configure)
USE_STUB = """
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MODULE "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(script IN LISTS MODULE_SCRIPTS)
    configure_file(${CMAKE_CURRENT_SOURCE_DIR}/${script}
      ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${script} COPYONLY)
  endforeach()
endmacro()
"""


@pytest.mark.slow
def test_the_build_tree_finds_its_models_pins_and_presets(tmp_path: Path):
    """Review §15: Slicer started on the build tree (the developer loop) had no models, no pins
    and no Train, because only install() put them beside the module."""
    cmake = shutil.which("cmake")
    if cmake is None or not (shutil.which("cc") and shutil.which("c++")):
        pytest.skip("cmake or a C/C++ compiler (project() needs one) not found")
    stub = tmp_path / "slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(BUILD_STUB)
    (stub / "use.cmake").write_text(USE_STUB)
    (stub / "empty.cmake").write_text("")
    build = tmp_path / "build"
    configured = subprocess.run(
        [cmake, "-S", str(REPO_ROOT), "-B", str(build), f"-DSlicer_DIR={stub}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert configured.returncode == 0, configured.stderr[-3000:]
    modules = build / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(modules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["models"] == str(modules / "Resources" / "Models")
    assert (modules / "Resources" / "Models" / "Models.json").is_file()
    assert found["pyproject"] == str(modules / "pyproject.toml")
    assert found["path"] == [str(modules)], "Training sits beside the library: nothing to add"
    assert found["presets"] and (modules / "LungLiverSegTraining" / "__main__.py").is_file()
