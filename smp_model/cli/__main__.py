"""``python -m smp_model.cli``: the ``smp`` command."""
import sys

from .command import main

sys.exit(main())
