"""``python -m ser.cli`` runs the ``ser`` command line."""

import sys

from ser.cli import main

sys.exit(main())
