"""Entry point for ``python -m core``."""

import sys
import warnings

from core.memory import limit_heap_growth

# Deprecation notices from inside timm/anomalib mean nothing to a user of this CLI.
warnings.filterwarnings("ignore", category=FutureWarning)
limit_heap_growth()  # before any training allocates (see core/memory.py)

from core.cli import main  # noqa: E402

sys.exit(main())
