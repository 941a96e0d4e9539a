"""The ``lunglivseg`` command: thin argument parsing over the library (as TotalSegmentator's ``bin/``).

``--help``, ``models`` and ``evaluate`` never import torch or MONAI: each command imports its
library code when it runs. Other packages add commands through the ``lunglivseg.commands``
entry-point group (Training adds ``train``).
"""

from LungLiverSegLib.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
