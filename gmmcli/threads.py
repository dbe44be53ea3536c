"""Settings for the command line's libraries, applied on import, before numpy and pyarrow
load (they read these variables when they load), so the CLI imports this module first.
Values the user has set are kept.

The E-step runs blocks of rows on every core itself; a multi-threaded BLAS inside each
block would only oversubscribe them. Arrow's allocator (mimalloc) commits memory for its
arenas eagerly and returns freed pages to the system only after a delay; told not to,
what a command holds follows what it uses, as --memory-limit needs.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
