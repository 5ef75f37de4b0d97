"""``python -m bearerguard.cli``, as ``python -m bearerguard``."""

import sys

from . import main

sys.exit(main())
