"""Segmenting an image with a bundle: ``segment.segment_image`` is the orchestrator; ``preprocess``
(``prepare`` and its inverse), ``sliding_window``, ``postprocess``, ``input_checks`` and ``memory``
are its steps.

May import: foundations, ``imageio``, ``bundle``. Imports torch, never MONAI (inference runs
without importing it; see ``bundle.unets``).
"""
