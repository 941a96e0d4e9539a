"""The module's Python dependencies: which are missing or at a version the pins exclude, what the
panel says about them, and installing them inside Slicer.

The install never lets pip touch what others own: torch comes only through Slicer's PyTorch
extension (``PyTorchUtils``, which picks the CUDA build for the driver), monai is installed with
``--no-deps`` (its dependencies are torch and numpy), and Slicer's own numpy, SimpleITK, SciPy and
Pillow are held at their installed versions by a constraints file. Afterwards the installed
versions are checked, and a failed pip run becomes a ``DependencyError`` (one line for a dialog).

Not ``slicer.packaging.pip_ensure``: it arrived in Slicer 5.12, and 5.10, the oldest Slicer
supported, lacks it; ``slicer.util.pip_install(list_of_args)`` is in both. Importing this module
needs only the standard library and ``packaging`` (bundled with Slicer).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from LungLiverSegLib import paths
from LungLiverSegLib.errors import LungLiverSegError

REQUIRED_IMPORTS = ("torch", "monai", "SimpleITK", "safetensors", "matplotlib")
"""Import names of pyproject's dependencies that a Slicer may lack (each is also its distribution
name). The others (numpy, scipy, pillow) come with every Slicer; ``Testing`` checks that the two
lists cover pyproject's."""
PROVIDED_BY_SLICER = ("SimpleITK",)
"""Checked but never installed: Slicer ships its own SimpleITK (with Slicer's image IO), and a pip
install over it breaks Slicer."""
HELD = ("numpy", "SimpleITK", "scipy", "PIL")
"""Import names of Slicer's own packages: every pip run is constrained to their installed
versions, so that a dependency of matplotlib or safetensors cannot replace them under Slicer."""
NO_DEPS = ("monai",)
"""Installed with ``--no-deps``: monai's dependencies are torch (PyTorchUtils' job) and numpy
(Slicer's); resolving them would let pip replace the CUDA torch with a PyPI build."""
DISTRIBUTIONS = {"PIL": "pillow"}
"""Distribution names that differ from the import name."""
UNKNOWN_VERSION = "unknown"
"""An importable package without distribution metadata: present, version not checkable."""


class DependencyError(LungLiverSegError):
    """A dependency could not be installed; the message says what the user can do."""


@dataclass(frozen=True)
class Unmet:
    """A required package that is not installed (``installed`` None) or at an excluded version."""

    name: str
    requirement: str
    installed: str | None = None

    def describe(self) -> str:
        if self.installed is None:
            return self.name
        return f"{self.name} {self.installed} (needs {Requirement(self.requirement).specifier})"


@dataclass(frozen=True)
class DependencyStatus:
    """The panel's dependency line (empty when all is well) and whether Install dependencies shows."""

    text: str
    can_install: bool


@dataclass(frozen=True)
class InstallPlan:
    """torch through PyTorchUtils, ``no_deps`` and ``pip_requirements`` through pip; ``unmet`` is
    what must be satisfied afterwards."""

    torch_requirement: str | None
    no_deps: tuple[str, ...] = ()
    pip_requirements: tuple[str, ...] = ()
    unmet: tuple[Unmet, ...] = ()

    @property
    def empty(self) -> bool:
        return self.torch_requirement is None and not self.no_deps and not self.pip_requirements


def missing_dependencies() -> list[str]:
    """Import names of the required packages that this Python cannot import."""
    return [name for name in REQUIRED_IMPORTS if importlib.util.find_spec(name) is None]


def installed_version(name: str) -> str | None:
    """The version of ``name`` this Python would import; None when it cannot be imported."""
    importlib.invalidate_caches()  # a package pip just installed is not in the finders' caches
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.metadata.version(DISTRIBUTIONS.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


@dataclass(frozen=True)
class Installers:
    """What installs: Slicer's functions in the module (``slicer_installers``), recording ones in
    the tests. ``install_torch`` takes a version requirement such as ``">=2.13.0"`` and returns the
    torch module (None when it was not installed); ``pip_install`` takes pip's arguments."""

    install_torch: Callable[[str], object]
    pip_install: Callable[[list[str]], object]
    version_of: Callable[[str], str | None] = installed_version


def pinned_requirements(pyproject: Path | None = None) -> dict[str, str]:
    """The project's dependencies by lower-case name, as pinned in ``pyproject.toml``.

    Empty when the file is not there (an extension package that does not ship it): the
    packages are then installed unpinned, which beats not installing them.
    """
    pyproject = pyproject or paths.pyproject()
    if not pyproject.is_file():
        return {}
    with pyproject.open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return {Requirement(requirement).name.lower(): requirement for requirement in dependencies}


def slicer_requirements(pinned: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the module needs in Slicer, by import name: pyproject's pins, torch as a minimum.

    torch's exact pin may not exist for the CUDA backend that PyTorchUtils picks for the driver;
    any later torch runs the models (the peers ask for a minimum the same way).
    """
    pinned = pinned_requirements() if pinned is None else pinned
    requirements = {name: pinned.get(name.lower(), name) for name in REQUIRED_IMPORTS}
    requirements["torch"] = _as_minimum(requirements["torch"])
    return requirements


def _as_minimum(requirement: str) -> str:
    parsed = Requirement(requirement)
    pins = [spec for spec in parsed.specifier if spec.operator in ("==", "===")]
    if len(pins) != 1 or len(parsed.specifier) != 1:
        return requirement
    return f"{parsed.name}>={pins[0].version}"


def unmet_dependencies(
    requirements: Mapping[str, str], version_of: Callable[[str], str | None] = installed_version
) -> list[Unmet]:
    """The required packages that are not installed or whose installed version the pin excludes."""
    unmet = []
    for name, requirement in requirements.items():
        version = version_of(name)
        specifier = Requirement(requirement).specifier
        if version is None:
            unmet.append(Unmet(name, requirement))
        elif version != UNKNOWN_VERSION and not specifier.contains(version, prereleases=True):
            unmet.append(Unmet(name, requirement, version))
    return unmet


def describe(unmet: Sequence[Unmet]) -> str:
    """``torch, monai 1.5.0 (needs ==1.6.1)``: for the status line and the install question."""
    return ", ".join(item.describe() for item in unmet)


def dependency_status(unmet: Sequence[Unmet]) -> DependencyStatus:
    """What the panel says about ``unmet``, and whether it offers the Install dependencies button."""
    installable = [item for item in unmet if item.name not in PROVIDED_BY_SLICER]
    from_slicer = [item for item in unmet if item.name in PROVIDED_BY_SLICER]
    lines = []
    if installable:
        lines.append(f"Missing Python packages: {describe(installable)}.")
    if from_slicer:
        lines.append(f"{describe(from_slicer)} should come with Slicer: reinstall Slicer 5.10 or later.")
    return DependencyStatus(" ".join(lines), bool(installable))


def install_plan(unmet: Sequence[Unmet]) -> InstallPlan:
    """How to install ``unmet``: torch through PyTorchUtils, monai without its dependencies, the
    rest through pip. Raises ``DependencyError`` for a package only Slicer can provide."""
    from_slicer = [item for item in unmet if item.name in PROVIDED_BY_SLICER]
    if from_slicer:
        raise DependencyError(dependency_status(from_slicer).text)
    by_name = {item.name: item.requirement for item in unmet}
    torch = by_name.pop("torch", None)
    return InstallPlan(
        torch_requirement=None if torch is None else str(Requirement(torch).specifier),  # ">=2.13.0"
        no_deps=tuple(requirement for name, requirement in by_name.items() if name in NO_DEPS),
        pip_requirements=tuple(requirement for name, requirement in by_name.items() if name not in NO_DEPS),
        unmet=tuple(unmet),
    )


def held_constraints(version_of: Callable[[str], str | None]) -> list[str]:
    """``name==version`` for each of Slicer's own packages that is installed with a known version."""
    versions = {DISTRIBUTIONS.get(name, name): version_of(name) for name in HELD}
    return [
        f"{name}=={version}" for name, version in versions.items() if version not in (None, UNKNOWN_VERSION)
    ]


def install_dependencies(plan: InstallPlan, installers: Installers) -> None:
    """Carry out ``plan``, then check that every package it covers is installed at a fitting version.

    A failed install (pip's or light-the-torch's ``CalledProcessError``) and a version that still
    does not fit raise ``DependencyError`` with a message for the dialog.
    """
    torch = plan.torch_requirement
    if torch is not None and _run("PyTorch", installers.install_torch, torch) is None:
        raise DependencyError("PyTorch was not installed; see the Python console for the reason")
    if plan.no_deps:
        _run("pip", installers.pip_install, ["--no-deps", *plan.no_deps])
    if plan.pip_requirements:
        with tempfile.TemporaryDirectory() as folder:
            constraints = Path(folder) / "slicer-constraints.txt"
            constraints.write_text("\n".join(held_constraints(installers.version_of)) + "\n")
            _run("pip", installers.pip_install, [*plan.pip_requirements, "--constraint", str(constraints)])
    requirements = {item.name: item.requirement for item in plan.unmet}
    still_unmet = unmet_dependencies(requirements, installers.version_of)
    if still_unmet:
        raise DependencyError(
            f"after the install, still not usable: {describe(still_unmet)}. "
            "Restart Slicer and try again; for torch use the PyTorch Utils module"
        )


def _run(what: str, install: Callable[..., object], argument: object) -> object:
    try:
        return install(argument)
    except subprocess.CalledProcessError as error:
        raise DependencyError(
            f"the {what} install failed (exit status {error.returncode}); its output is in the Python console"
        ) from error


def slicer_installers() -> Installers:
    """Slicer's installers: PyTorchUtils for torch, ``slicer.util.pip_install`` (5.10 and 5.12)."""
    import slicer.util

    return Installers(install_torch=_install_torch, pip_install=slicer.util.pip_install)


def _install_torch(version_requirement: str) -> object:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise DependencyError(
            "LungLiverSeg needs the PyTorch extension: install it from the Extensions Manager, "
            "restart Slicer and try again"
        ) from None
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=version_requirement
    )
