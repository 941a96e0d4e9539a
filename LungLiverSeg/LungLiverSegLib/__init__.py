"""LungLiverSeg's core: segmentation, evaluation and dataset export, with no GUI.

Layers (docs/ARCHITECTURE.md draws them; ``Testing/test_architecture.py`` enforces them), lowest
first; a module may import from its own layer and the layers below, never above:

1. foundations: ``errors``, ``labels``, ``files``, ``jsonio``, ``progress``, ``tables``,
   ``svg_plot``, ``paths``, ``geometry`` (numpy/SimpleITK only);
2. formats: ``imageio`` (images, DICOM, ``.seg.nrrd``) and ``bundle`` (model bundles and the
   catalogue; only ``bundle.weights``, ``bundle.networks`` and ``bundle.unets`` import torch);
3. work: ``segmentation`` (torch), ``evaluation`` (numpy/scipy), ``dataset`` (the training
   dataset layout and export);
4. composition: ``api``, ``demo``, ``worklist`` (unlabeled scans ranked for correction);
5. front ends: ``cli`` and ``slicer_module``. Only ``slicer_module`` may import slicer, vtk or
   qt; it runs the ``cli`` in a child process and reads its JSON lines (``cli.events``), and
   ``cli`` never imports it. Both import torch-heavy code only inside functions, so the Slicer
   module loads before torch is installed and ``lunglivseg --help`` stays fast;
6. browser app: ``browser`` (``lunglivseg app``), a second thin front end on ``slicer_module``'s
   logic with trame-slicer's viewer and editor; it adds its command through the entry point.

Nothing here imports ``LungLiverSegTraining``, not even inside a function: Training sits above
the core and plugs its ``train`` command into the CLI through the ``lunglivseg.commands``
entry-point group.
"""
