"""``python -m fastrapi``: the ``fastrapi`` command."""

import sys

from fastrapi.cli import main

# The guard matters: --reload's server process is spawned, and spawning
# imports the parent's __main__ module again under another name.
if __name__ == "__main__":
    sys.exit(main())
