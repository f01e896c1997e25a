"""``python -m nodegraph`` is the ``nodegraph`` command."""

import sys

from .cli import main

sys.exit(main())
