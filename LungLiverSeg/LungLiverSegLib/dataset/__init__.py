"""Training datasets in the nnU-Net/MSD layout: ``layout`` names, writes and reads it (for export,
the phantom dataset, Training's reader and the LCTSC script); ``export`` adds approved cases.

May import: foundations, ``imageio``, the torch-free parts of ``bundle``, ``evaluation`` (only
``export``: ``layout`` stays below ``evaluation``, which names cases with it).
"""
