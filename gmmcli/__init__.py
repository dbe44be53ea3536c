"""gmmcli: Gaussian mixture models fitted by EM, for the shell and for Python.

The public Python API::

    import gmmcli
    model = gmmcli.fit(X, 3, weights=w, covariance_type="full", seed=0)
    gmmcli.save(model, "model.json")
    labels = gmmcli.load("model.json").predict(X)
"""

__version__ = "0.1.0"

from gmmcli.core import FitInfo, GaussianMixture, fit  # noqa: E402
from gmmcli.errors import GMMError, GMMWarning, UserError  # noqa: E402
from gmmcli.io.modelfile import dumps, load, loads, save  # noqa: E402

__all__ = [
    "FitInfo",
    "GMMError",
    "GMMWarning",
    "GaussianMixture",
    "UserError",
    "__version__",
    "dumps",
    "fit",
    "load",
    "loads",
    "save",
]
