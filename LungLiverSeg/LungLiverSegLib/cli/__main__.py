"""``python -m LungLiverSegLib.cli``: the same as the ``lunglivseg`` command."""

import sys

from LungLiverSegLib.cli import main

sys.exit(main())
