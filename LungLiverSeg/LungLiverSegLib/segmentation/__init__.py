"""Segmenting an image with a bundle: preprocessing and its inverse, the network, post-processing,
input checks and the memory plan. ``segment.segment_image`` is the orchestrator.

May import: foundations, ``imageio``, ``bundle``. Imports torch and MONAI.
"""
