"""``python -m maskad_core ...`` is the ``maskad`` command; torchrun launches distributed training
as ``torchrun --nproc_per_node=N -m maskad_core train ...``."""

import sys

from maskad_core.cli.main import main

sys.exit(main())
