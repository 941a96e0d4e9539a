"""``python -m LungLiverSegTraining``: the ``lunglivseg`` command with ``train``, wherever Training is.

The composition root for an installed Slicer extension, which has no package metadata (so no
entry points): the Slicer module's child process and ``torchrun`` start training this way.
"""

import sys

from LungLiverSegLib.cli import main

from LungLiverSegTraining.cli import add_train_command

sys.exit(main(plugins={"train": add_train_command}))
