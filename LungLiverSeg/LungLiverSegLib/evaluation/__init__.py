"""Segmentation metrics (Dice, NSD, HD95, ASD) and the evaluation of files and folders.

May import: foundations and ``imageio``. No torch.
"""
