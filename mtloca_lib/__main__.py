"""``python -m mtloca_lib`` is the ``mtloca`` command (for copies of the tree that are not installed)."""
import sys

from mtloca_lib.cli import main

sys.exit(main())
