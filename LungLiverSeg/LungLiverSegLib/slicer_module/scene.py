"""A real MRML scene without the Slicer application, for tests and headless scripts.

PyPI ``slicer-core`` ships Slicer's Qt-free libraries (MRML, module logics) but no application,
so nothing registers the module logics that nodes and ``vtkSlicerSegmentationsModuleLogic`` expect.
``create_headless_scene`` wires them the way trame-slicer's ``SlicerApp`` does, minus views,
rendering and the terminologies logic: that one needs the ``*.term.json`` share files, which
slicer-core does not ship (terminology strings are built with its static methods instead).
``slicer`` is imported inside the function so that importing this module never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import slicer


def create_headless_scene() -> slicer.vtkMRMLScene:
    """Return a ``vtkMRMLScene`` with the application, colour, volumes, segmentations
    and subject-hierarchy logics registered.

    ``vtkMRMLApplicationLogic.SetModuleLogic`` keeps no reference, so the logics are kept alive in
    the scene's ``module_logics`` attribute (a dict by module name; ``"Application"`` holds the
    application logic), which also hands them to scripts that need them.
    """
    import slicer

    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    application_logic.GetColorLogic().SetMRMLScene(scene)
    application_logic.GetColorLogic().AddDefaultColorNodes()
    module_logics = {
        "Colors": slicer.vtkMRMLColorLogic(),
        "Volumes": slicer.vtkSlicerVolumesLogic(),
        "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
        "SubjectHierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(),
    }
    for module_name, logic in module_logics.items():
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application_logic)
        application_logic.SetModuleLogic(module_name, logic)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    scene.module_logics = {"Application": application_logic, **module_logics}
    return scene
