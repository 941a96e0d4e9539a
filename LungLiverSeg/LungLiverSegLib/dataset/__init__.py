"""Training datasets in the nnU-Net/MSD layout: written by export, read by Training.

May import: foundations, ``imageio``, the torch-free parts of ``bundle``, ``evaluation``.
"""
