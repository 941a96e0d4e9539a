"""Headless training of LungLiverSeg models: datasets, presets, the training loop and bundle export.

Everything a trained model needs at inference time goes through the core package
(``LungLiverSegLib.segmentation.preprocess.prepare``, ``segmentation.segment.segment_image``,
``bundle.weights.save_bundle``), so training and segmentation cannot disagree on preprocessing or
on the bundle format.

May import the core (``LungLiverSegLib``) except ``slicer_module``, and never slicer, vtk or qt:
training runs headless. The core never imports this package; ``train`` joins the ``lunglivseg``
command through the ``lunglivseg.commands`` entry point and ``python -m LungLiverSegTraining``.
"""
