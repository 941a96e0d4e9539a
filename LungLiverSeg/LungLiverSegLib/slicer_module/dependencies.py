"""The module's Python dependencies: which are missing, and installing them inside Slicer on first
use (torch through Slicer's PyTorch extension, which picks the CUDA build; the rest through pip,
at the versions ``pyproject.toml`` pins).

Not ``slicer.packaging`` (``load_pyproject_dependencies``, ``pip_ensure``): it arrived in Slicer
5.12, and 5.10, the oldest Slicer supported, lacks it; ``slicer.util.pip_install`` is in both.
Importing this module needs only the standard library and ``packaging`` (bundled with Slicer).
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from LungLiverSegLib import paths
from LungLiverSegLib.errors import LungLiverSegError

REQUIRED_IMPORTS = ("torch", "monai", "SimpleITK", "safetensors", "matplotlib")
"""Import names of pyproject's dependencies that a Slicer may lack. The others (numpy, scipy,
pillow) come with every Slicer; ``Testing`` checks that the two lists cover pyproject's."""
PROVIDED_BY_SLICER = ("SimpleITK",)
"""Checked but never installed: Slicer ships its own SimpleITK (with Slicer's image IO), and a pip
install over it breaks Slicer."""


class DependencyError(LungLiverSegError):
    """A dependency could not be installed; the message says what the user can do."""


@dataclass(frozen=True)
class InstallPlan:
    """torch through Slicer's PyTorch extension (it picks the CUDA build), the rest through pip."""

    torch_requirement: str | None
    pip_requirements: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.torch_requirement is None and not self.pip_requirements


def missing_dependencies() -> list[str]:
    """Import names of the required packages that this Python cannot import."""
    return [name for name in REQUIRED_IMPORTS if importlib.util.find_spec(name) is None]


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


def install_plan(missing: Sequence[str], requirements: dict[str, str]) -> InstallPlan:
    """What to install for ``missing`` imports, versions from ``requirements``."""
    torch_requirement = None
    if "torch" in missing:  # PyTorchUtils takes the version part only, e.g. "==2.13.0"
        torch_requirement = requirements.get("torch", "torch").removeprefix("torch").strip()
    pip = tuple(
        requirements.get(name.lower(), name)
        for name in missing
        if name != "torch" and name not in PROVIDED_BY_SLICER
    )
    return InstallPlan(torch_requirement, pip)


def install_dependencies(plan: InstallPlan) -> None:
    """Install inside Slicer (only there: it needs ``slicer.util`` and the PyTorch extension)."""
    if plan.torch_requirement is not None:
        _install_torch(plan.torch_requirement)
    import slicer.util

    for requirement in plan.pip_requirements:
        slicer.util.pip_install(requirement)


def _install_torch(version_requirement: str) -> None:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise DependencyError(
            "LungLiverSeg needs the PyTorch extension: install it from the Extensions Manager, "
            "restart Slicer and try again"
        ) from None
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=version_requirement) is None:
        raise DependencyError("PyTorch could not be installed; see the Python console for the reason")
