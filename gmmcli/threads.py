"""Thread settings for the command line, applied on import, before numpy loads.

The E-step runs blocks of rows on every core itself; a multi-threaded BLAS inside each
block would only oversubscribe them. OpenBLAS reads these variables when numpy loads, so
the CLI imports this module first. Values the user has set are kept.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
