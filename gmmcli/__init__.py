"""gmmcli: Gaussian mixture models fitted by EM, for the shell and for Python.

The public Python API::

    import gmmcli
    model = gmmcli.fit(X, 3, weights=w, covariance_type="full", seed=0)
    gmmcli.save(model, "model.json")
    labels = gmmcli.load("model.json").predict(X)
"""

__version__ = "0.1.0"

_EXPORTS = {
    "FitInfo": "gmmcli.core",
    "GaussianMixture": "gmmcli.core",
    "fit": "gmmcli.core",
    "GMMError": "gmmcli.errors",
    "GMMWarning": "gmmcli.errors",
    "UserError": "gmmcli.errors",
    "dumps": "gmmcli.io.modelfile",
    "load": "gmmcli.io.modelfile",
    "loads": "gmmcli.io.modelfile",
    "save": "gmmcli.io.modelfile",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import the API on first use, so `import gmmcli.cli` can set threads before numpy loads."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gmmcli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
