"""Headless training of LungLiverSeg models: datasets, presets, the training loop and bundle export.

Everything a trained model needs at inference time goes through the core package
(``LungLiverSegLib.segmentation.preprocess.prepare``, ``inference.segment_image``, ``bundle.save_bundle``), so
training and segmentation cannot disagree on preprocessing or on the bundle format.
"""
