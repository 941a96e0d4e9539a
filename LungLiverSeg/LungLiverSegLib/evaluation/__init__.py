"""Segmentation metrics (Dice, NSD, HD95, ASD) and the evaluation of files and folders.

May import: foundations, ``imageio`` and ``dataset.layout`` (cases are named the nnU-Net way). No
torch.
"""
