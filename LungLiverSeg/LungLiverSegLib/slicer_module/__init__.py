"""The Slicer side: the Qt-free logic behind the module's widget (``LungLiverSeg.py``).

``logic`` (``SceneLogic``: segmentation jobs, proposals, export, starting training) uses
``mrml_bridge`` (images and labels to and from MRML nodes; the scene rollback), ``staging`` (batch
inputs), ``training_job`` (a training run's status and the installation of its bundle) and
``process`` (the child-process runner and the command lines). ``presentation`` (combo-box and
status-line text) and ``dependencies`` (what is missing, installing it) serve the widget;
``scene`` builds a headless scene for tests and scripts.

The only subpackage that may import slicer, vtk or qt; it may import the rest of the core, never
``LungLiverSegTraining`` (``train`` runs in a child process). Nothing here imports torch, MONAI or
safetensors when it is imported, so that the module loads in a Slicer where they are still missing
and can offer to install them (``Testing/slicer_module/test_dependencies.py`` checks it).
"""
