"""``python -m fedlab_mm grid ...``: the same as the ``fedlab-mm`` command."""

import sys

from .experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
