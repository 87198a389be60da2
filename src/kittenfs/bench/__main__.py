"""``python -m kittenfs.bench`` runs the benchmark suite."""

import sys

from .suite import main

sys.exit(main())
