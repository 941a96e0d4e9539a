"""The module's dependencies in Slicer (review sections 2, 5, 6 and 9).

* First run: where torch, MONAI, safetensors and matplotlib are not installed yet, the module's
  code loads, the panel names what is missing and shows Install dependencies (§5).
* The install: torch only through PyTorchUtils (a minimum version), MONAI with ``--no-deps``, the
  rest with Slicer's numpy/SimpleITK/SciPy/Pillow held; versions checked afterwards; failures
  become one-line errors (§9). The installers are parameters: recording ones here, and the pip
  arguments are fed to Slicer's own ``pip_install`` code (5.10 and 5.12) and PyTorchUtils'.
* The oldest Slicer, 5.10, in the module (a one-line error on Slicer 5.8's Python 3.9), the CMake
  build and the README (§2); matplotlib installed and, when missing, one line from Train (§6).

``LungLiverSeg.py`` itself loads under Slicer's own Python layer (v5.10.0 and v5.12.3, from
../shared/slicer-reference) on slicer-core's real MRML, with stand-ins only for what is not under
test and cannot be installed here: PythonQt's ``qt``/``ctk`` (nothing calls them while loading)
and the ``@parameterNodeWrapper`` decorator (it needs real Qt widgets; its validators are Slicer's).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest
from factories import REPO_ROOT
from LungLiverSegLib.paths import LIBRARY
from LungLiverSegLib.slicer_module import dependencies
from packaging.requirements import Requirement
from slicer_module.slicer_harness.harness import HARNESS_DIR

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
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
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
import types

sys.path.insert(0, {harness!r})
from loading import empty_pythonqt, load

empty_pythonqt()
import slicer

load("slicer.i18n", {python!r} + "/i18n.py")
load("slicer.ScriptedLoadableModule", {python!r} + "/ScriptedLoadableModule.py")
validators = load("parameterNodeWrapper_validators", {python!r} + "/parameterNodeWrapper/validators.py")
wrapper = sys.modules["slicer.parameterNodeWrapper"] = types.ModuleType("slicer.parameterNodeWrapper")
wrapper.parameterNodeWrapper = lambda cls: cls
wrapper.Choice, wrapper.WithinRange = validators.Choice, validators.WithinRange  # Slicer's own

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
        LOAD_MODULE_FILE.format(python=str(python), module_file=str(module_file), harness=str(HARNESS_DIR))
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


def test_the_slicer_requirements_are_the_pins_with_torch_as_a_minimum():
    """PyTorchUtils picks the CUDA build for the driver; an exact torch pin may not exist for it."""
    pinned = dependencies.pinned_requirements()
    requirements = dependencies.slicer_requirements(pinned)
    assert pinned["torch"].startswith("torch==")
    assert requirements["torch"] == pinned["torch"].replace("==", ">=")
    assert requirements["monai"] == pinned["monai"]
    assert set(requirements) == set(dependencies.REQUIRED_IMPORTS)
    assert dependencies.unmet_dependencies(requirements) == []  # the test environment has them all


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


def test_pytorchutils_gets_only_the_version_part_of_the_torch_requirement():
    """It builds ``"torch" + requirement`` itself; the name, however spelled, must not be in it."""
    requirements = dependencies.slicer_requirements({"torch": "Torch ==2.13.0"})
    plan = dependencies.install_plan([dependencies.Unmet("torch", requirements["torch"])])
    assert plan.torch_requirement == ">=2.13.0"


def test_missing_pyproject_means_unpinned_installs(tmp_path: Path):
    requirements = dependencies.slicer_requirements(dependencies.pinned_requirements(tmp_path / "x.toml"))
    assert requirements["torch"] == "torch" and requirements["monai"] == "monai"
    unmet = [dependencies.Unmet("torch", "torch"), dependencies.Unmet("monai", "monai")]
    plan = dependencies.install_plan(unmet)
    assert (plan.torch_requirement, plan.no_deps, plan.pip_requirements) == ("", ("monai",), ())


# ---- what the panel says (review §5): the status line and the Install dependencies button -------

PINNED = {"torch": "torch==2.13.0", "monai": "monai==1.6.1", "matplotlib": "matplotlib>=3.8"}


def test_missing_packages_show_the_status_line_and_the_install_button():
    requirements = dependencies.slicer_requirements(PINNED)
    fresh_slicer = {"SimpleITK": "2.5.0"}  # what a fresh Slicer has of the five
    unmet = dependencies.unmet_dependencies(requirements, fresh_slicer.get)
    status = dependencies.dependency_status(unmet)
    assert [item.name for item in unmet] == ["torch", "monai", "safetensors", "matplotlib"]
    assert status == dependencies.DependencyStatus(
        "Missing Python packages: torch, monai, safetensors, matplotlib.", can_install=True
    )


def test_nothing_missing_means_no_status_line_and_no_button():
    versions = {"torch": "2.15.0+cu128", "monai": "1.6.1", "SimpleITK": "2.5.0", "safetensors": "0.5.3"}
    requirements = dependencies.slicer_requirements(PINNED)
    unmet = dependencies.unmet_dependencies(requirements, {**versions, "matplotlib": "3.10.0"}.get)
    assert unmet == []
    assert dependencies.dependency_status(unmet) == dependencies.DependencyStatus("", can_install=False)


def test_a_version_the_pins_exclude_counts_as_missing_and_says_which():
    """A torch another extension installed may be too old for monai 1.6.1 (it needs torch>=2.8)."""
    versions = {"torch": "2.2.2", "monai": "1.5.0", "SimpleITK": "2.5.0", "safetensors": "0.5.3"}
    requirements = dependencies.slicer_requirements(PINNED)
    unmet = dependencies.unmet_dependencies(requirements, {**versions, "matplotlib": "3.10.0"}.get)
    assert dependencies.dependency_status(unmet).text == (
        "Missing Python packages: torch 2.2.2 (needs >=2.13.0), monai 1.5.0 (needs ==1.6.1)."
    )


def test_a_package_that_only_slicer_provides_gets_no_install_button():
    unmet = [dependencies.Unmet("SimpleITK", "SimpleITK>=2.4,<3")]
    status = dependencies.dependency_status(unmet)
    assert status == dependencies.DependencyStatus(
        "SimpleITK should come with Slicer: reinstall Slicer 5.10 or later.", can_install=False
    )
    with pytest.raises(dependencies.DependencyError, match="reinstall Slicer"):
        dependencies.install_plan(unmet)


def test_an_importable_package_without_metadata_is_not_reported():
    unmet = dependencies.unmet_dependencies({"SimpleITK": "SimpleITK>=2.4"}, lambda name: "unknown")
    assert unmet == []


WIDGET_STATUS = """
from types import SimpleNamespace

label, button = SimpleNamespace(text="", visible=False), SimpleNamespace(visible=False)
widget = module.LungLiverSegWidget.__new__(module.LungLiverSegWidget)
widget.ui = SimpleNamespace(dependencyStatusLabel=label, installDependenciesButton=button)
unmet = widget.updateDependencyStatus()
print(json.dumps({"unmet": [item.name for item in unmet], "text": label.text,
                  "label": label.visible, "button": button.visible}))
"""


@pytest.mark.slicer
@NEEDS_SLICER_CORE
def test_the_panel_offers_the_install_in_a_fresh_slicer():
    """The widget's own status method, in the module file loaded as Slicer loads it, without torch."""
    python = SLICER_REFERENCE / "v5.12.3" / "Base" / "Python" / "slicer"
    if not (python / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer's Python layer not found at {python}")
    module_file = REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py"
    load = LOAD_MODULE_FILE.format(python=str(python), module_file=str(module_file), harness=str(HARNESS_DIR))
    result = run_without_dependencies("import json\n" + load + WIDGET_STATUS)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {
        "unmet": ["torch", "monai", "safetensors", "matplotlib"],
        "text": "Missing Python packages: torch, monai, safetensors, matplotlib.",
        "label": True,
        "button": True,
    }


def test_the_install_button_is_in_the_ui_and_runs_the_install():
    """Not only Segment/Train (disabled while nothing is selected) lead to the install."""
    ui = ElementTree.parse(REPO_ROOT / "LungLiverSeg" / "Resources" / "UI" / "LungLiverSeg.ui")
    widgets = {widget.get("name"): widget.get("class") for widget in ui.iter("widget")}
    assert widgets["installDependenciesButton"] == "QPushButton"
    assert widgets["dependencyStatusLabel"] == "QLabel"
    methods = widget_methods()
    assert (
        'self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependenciesButton)'
        in (methods["setup"])
    )
    assert "self.installDependencies(" in methods["onInstallDependenciesButton"]
    assert (
        "dependencies.install_dependencies(plan, dependencies.slicer_installers())"
        in (methods["installDependencies"])
    )
    assert "missing_dependencies" not in methods["setup"], "the model list must not wait for torch"


def widget_methods() -> dict[str, str]:
    source = (REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py").read_text()
    tree = ast.parse(source)
    (widget,) = (
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name.endswith("Widget")
    )
    return {
        node.name: ast.get_source_segment(source, node) or ""
        for node in widget.body
        if isinstance(node, ast.FunctionDef)
    }


# ---- installing (review §9): torch only through PyTorchUtils, pip never replacing torch ----------


class Environment:
    """A Python environment as the installers see it: versions by import name, and what was run."""

    def __init__(self, versions: dict[str, str], pip_versions: dict[str, str] | None = None) -> None:
        self.versions = dict(versions)
        self.pip_versions = pip_versions or {}  # what pip installs of a name, by default the pin
        self.torch_calls: list[str] = []
        self.pip_calls: list[list[str]] = []
        self.constraints: list[str] = []

    def installers(self) -> dependencies.Installers:
        return dependencies.Installers(self.install_torch, self.pip_install, self.versions.get)

    def install_torch(self, version_requirement: str) -> object:
        self.torch_calls.append(version_requirement)
        self.versions["torch"] = "2.15.0+cu128"
        return "torch module"

    def pip_install(self, args: list[str]) -> None:
        self.pip_calls.append(list(args))
        if "--constraint" in args:
            self.constraints = Path(args[args.index("--constraint") + 1]).read_text().split()
        for arg in args:
            if arg.startswith("-") or Path(arg).is_absolute():
                continue
            requirement = Requirement(arg)
            pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            self.versions[requirement.name] = self.pip_versions.get(requirement.name, (pinned or ["9.0"])[0])


FRESH_SLICER = {"SimpleITK": "2.5.0", "numpy": "2.2.6", "scipy": "1.15.3", "PIL": "11.2.1"}


def fresh_plan(environment: Environment) -> dependencies.InstallPlan:
    requirements = dependencies.slicer_requirements(dependencies.pinned_requirements())
    return dependencies.install_plan(dependencies.unmet_dependencies(requirements, environment.versions.get))


def test_the_install_in_a_fresh_slicer_runs_exactly_these_steps():
    pins = dependencies.pinned_requirements()
    environment = Environment(FRESH_SLICER)
    dependencies.install_dependencies(fresh_plan(environment), environment.installers())

    assert environment.torch_calls == [pins["torch"].removeprefix("torch").replace("==", ">=")]
    no_deps, rest = environment.pip_calls
    assert no_deps == ["--no-deps", pins["monai"]]  # monai's dependency on torch is not resolved
    assert rest[:-1] == [pins["safetensors"], pins["matplotlib"], "--constraint"]
    assert environment.constraints == ["numpy==2.2.6", "SimpleITK==2.5.0", "scipy==1.15.3", "pillow==11.2.1"]


def test_pip_is_never_asked_for_torch():
    """Not even when torch is installed but too old: PyTorchUtils upgrades it, pip does not."""
    for versions in (FRESH_SLICER, {**FRESH_SLICER, "torch": "2.2.2", "monai": "1.5.0"}):
        environment = Environment(versions)
        dependencies.install_dependencies(fresh_plan(environment), environment.installers())
        assert len(environment.torch_calls) == 1
        arguments = [arg for call in environment.pip_calls for arg in call]
        installed = {Requirement(arg).name.lower() for arg in arguments if not arg.startswith(("-", "/"))}
        constrained = {Requirement(line).name.lower() for line in environment.constraints}
        assert "torch" not in installed | constrained and "monai" in installed
        assert not {"numpy", "simpleitk", "scipy", "pillow"} & installed  # only held, never installed


def test_a_failed_pip_run_becomes_a_message_for_the_dialog():
    def failing_pip(args: list[str]) -> None:
        raise subprocess.CalledProcessError(1, ["PythonSlicer", "-m", "pip", "install", *args])

    environment = Environment(FRESH_SLICER)
    installers = dependencies.Installers(environment.install_torch, failing_pip, environment.versions.get)
    with pytest.raises(dependencies.DependencyError, match=r"pip install failed \(exit status 1\)"):
        dependencies.install_dependencies(fresh_plan(environment), installers)


def test_a_version_that_still_does_not_fit_after_the_install_is_reported():
    environment = Environment(FRESH_SLICER, pip_versions={"monai": "1.5.0"})
    with pytest.raises(dependencies.DependencyError, match=r"monai 1\.5\.0 \(needs ==1\.6\.1\)"):
        dependencies.install_dependencies(fresh_plan(environment), environment.installers())


def test_torch_that_pytorchutils_did_not_install_is_reported():
    environment = Environment(FRESH_SLICER)
    installers = dependencies.Installers(
        lambda requirement: None, environment.pip_install, environment.versions.get
    )
    with pytest.raises(dependencies.DependencyError, match="PyTorch was not installed"):
        dependencies.install_dependencies(fresh_plan(environment), installers)
    assert environment.pip_calls == []


def test_a_cuda_build_of_torch_satisfies_the_minimum():
    unmet = dependencies.unmet_dependencies({"torch": "torch>=2.13.0"}, {"torch": "2.13.0+cu128"}.get)
    assert unmet == []


# ---- the installers' real signatures, read from Slicer's and SlicerPyTorch's own files -----------


def slicer_function(path: Path, name: str, namespace: dict[str, object]) -> Callable[..., object]:
    """One function of a Slicer file, compiled on its own (the file needs Qt to import)."""
    if not path.is_file():
        pytest.skip(f"Slicer reference file not found at {path}")
    source = path.read_text()
    (node,) = (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == name)
    node.decorator_list = []
    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return namespace[name]  # type: ignore[return-value]


def test_pytorchutils_gets_the_requirement_in_the_form_it_expects():
    """``installTorch(askConfirmation=, torchVersionRequirement=)`` runs ``ltt install torch<req>``."""
    path = SLICER_REFERENCE / "SlicerPyTorch" / "PyTorchUtils" / "PyTorchUtils.py"
    arguments = slicer_function(path, "_getPipInstallArguments", {})
    plan = fresh_plan(Environment(FRESH_SLICER))
    ltt_args = arguments(None, plan.torch_requirement)
    assert ltt_args[:2] == ["install", f"torch>={dependencies.pinned_requirements()['torch'].split('==')[1]}"]
    install_torch = next(
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "installTorch"
    )
    assert {"askConfirmation", "torchVersionRequirement"} <= {arg.arg for arg in install_torch.args.args}


@pytest.mark.parametrize("version", ["v5.10.0", "v5.12.3"])
def test_slicer_pip_install_passes_the_arguments_to_pip_unchanged(version: str):
    """A list goes to ``pip install`` as it is, in 5.10's ``util.pip_install`` and 5.12's ``packaging``."""
    python = SLICER_REFERENCE / version / "Base" / "Python" / "slicer"
    calls: list[tuple[str, ...]] = []
    if version == "v5.10.0":
        pip_install = slicer_function(
            python / "util.py",
            "pip_install",
            {"_executePythonModule": lambda module, args: calls.append(args)},
        )
    else:
        build = slicer_function(python / "packaging.py", "_build_pip_args", {"shlex": shlex})

        def pip_install(requirements: list[str]) -> None:
            calls.append(tuple(build(requirements, None, no_deps=False)))

    for arguments in (["--no-deps", "monai==1.6.1"], ["matplotlib>=3.8", "--constraint", "/tmp/c.txt"]):
        pip_install(arguments)
    assert calls == [
        ("install", "--no-deps", "monai==1.6.1"),
        ("install", "matplotlib>=3.8", "--constraint", "/tmp/c.txt"),
    ]


# ---- the oldest Slicer (review §2): 5.10, said by the module, CMake and the README ------------------

LOAD_ON_OLD_PYTHON = """
import importlib.util, sys
sys.path.insert(0, {folder!r})
spec = importlib.util.spec_from_file_location("LungLiverSeg", {module_file!r})
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except ImportError as error:
    loaded = sorted(name for name in sys.modules if name.startswith("LungLiverSeg"))
    print(type(error).__name__, "|", error, "|", loaded)
"""


def test_on_slicer_5_8_python_the_module_says_which_slicer_it_needs():
    """Slicer 5.8 runs Python 3.9: one line that names the Slicer needed, before any library import."""
    python = PYENV_ROOT / "versions" / "3.9.18" / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"Python 3.9 (Slicer 5.8's) not found at {python}")
    folder = REPO_ROOT / "LungLiverSeg"
    code = LOAD_ON_OLD_PYTHON.format(folder=str(folder), module_file=str(folder / "LungLiverSeg.py"))
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == (
        "ImportError | LungLiverSeg needs 3D Slicer 5.10 or later (this is Python 3.9.18) | []"
    ), result.stderr[-2000:]


def test_the_minimum_slicer_is_the_same_in_the_module_cmake_and_readme():
    module = ast.parse((REPO_ROOT / "LungLiverSeg" / "LungLiverSeg.py").read_text())
    (minimum,) = (
        node.value.value
        for node in module.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and [getattr(target, "id", None) for target in node.targets] == ["MINIMUM_SLICER"]
    )
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert f'set(LungLiverSeg_MINIMUM_SLICER "{minimum}")' in cmake
    assert f"Needs Slicer {minimum} or later." in cmake  # EXTENSION_DESCRIPTION
    assert f"Slicer {minimum} or later" in readme_section("Use it in Slicer")


CMAKE_STUB = """
set(Slicer_REQUIRED_PYTHON_VERSION "{python}")
set(Slicer_USE_FILE "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${{CMAKE_CURRENT_LIST_DIR}}/empty.cmake")
"""


@pytest.mark.parametrize(("python", "refused"), [("3.9.10", True), ("3.12.10", False)])
def test_cmake_refuses_to_build_against_a_slicer_older_than_5_10(tmp_path: Path, python: str, refused: bool):
    """The extension build stops at configure time on Slicer 5.8 (Python 3.9), with the reason."""
    cmake = shutil.which("cmake")
    if cmake is None or not (shutil.which("cc") and shutil.which("c++")):
        pytest.skip("cmake or a C/C++ compiler (project() needs one) not found")
    stub = tmp_path / "slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(CMAKE_STUB.format(python=python))
    (stub / "empty.cmake").write_text("")
    result = subprocess.run(
        [cmake, "-S", str(REPO_ROOT), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={stub}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = f"LungLiverSeg needs 3D Slicer 5.10 or later (Python 3.12); this Slicer has Python {python}"
    assert (message in " ".join(result.stderr.split())) == refused, result.stderr[-2000:]


def readme_section(title: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


# ---- matplotlib in the training child (review §6) ---------------------------------------------------

TRAIN_WITHOUT_MATPLOTLIB = """
import runpy
sys.argv = ["LungLiverSegTraining", "train", "--dataset", {dataset!r}, "--out", {out!r}]
runpy.run_module("LungLiverSegTraining", run_name="__main__", alter_sys=True)
"""


def test_matplotlib_is_installed_by_the_plan():
    plan = fresh_plan(Environment(FRESH_SLICER))
    assert dependencies.pinned_requirements()["matplotlib"] in plan.pip_requirements


@pytest.mark.slow
def test_train_without_matplotlib_fails_with_one_line(tmp_path: Path):
    """``python -m LungLiverSegTraining train`` (the Slicer child) in a Python that lacks matplotlib."""
    code = HIDE.format(not_installed=("matplotlib",)) + TRAIN_WITHOUT_MATPLOTLIB.format(
        dataset=str(tmp_path), out=str(tmp_path / "run")
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lunglivseg: error: training needs the Python package 'matplotlib', which is not installed "
        "(in Slicer: Install dependencies in the LungLiverSeg module)"
    ]
