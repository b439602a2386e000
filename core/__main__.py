"""Entry point for ``python -m core``."""

import os
import sys
import warnings

# Before torch loads OpenMP: spinning threads made torch 5-10× slower on a shared 2-core CPU (as app.py does).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from core.memory import limit_heap_growth

# Deprecation notices from inside timm/anomalib mean nothing to a user of this CLI.
warnings.filterwarnings("ignore", category=FutureWarning)
limit_heap_growth()  # before any training allocates (see core/memory.py)

from core.cli import main  # noqa: E402

sys.exit(main())
