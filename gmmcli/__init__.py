"""gmmcli: Gaussian mixture models fitted by EM, for the shell and for Python.

The public Python API does what the command line does, on arrays, tables and files::

    import gmmcli
    model = gmmcli.fit("data.parquet", 3, weights="count", covariance_type="diag", seed=0)
    gmmcli.save(model, "model.json")
    labels = gmmcli.load("model.json").predict(table)       # columns by feature name
    gmmcli.classify("big.csv", model, "labelled.csv")        # file to file, in chunks
"""

__version__ = "0.1.0"

_EXPORTS = {
    "FitInfo": "gmmcli.core",
    "FitOptions": "gmmcli.core",
    "GaussianMixture": "gmmcli.core",
    "Grid": "gmmcli.core",
    "GridPoint": "gmmcli.core",
    "Source": "gmmcli.inputs",
    "classify": "gmmcli.api",
    "fit": "gmmcli.api",
    "impute": "gmmcli.api",
    "score": "gmmcli.api",
    "select_k": "gmmcli.api",
    "DataError": "gmmcli.errors",
    "GMMError": "gmmcli.errors",
    "GMMWarning": "gmmcli.errors",
    "InvalidParameter": "gmmcli.errors",
    "SingularCovarianceError": "gmmcli.errors",
    "UserError": "gmmcli.errors",
    "dumps": "gmmcli.io.modelfile",
    "load": "gmmcli.io.modelfile",
    "loads": "gmmcli.io.modelfile",
    "save": "gmmcli.io.modelfile",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import the API on first use, so `import gmmcli.cli` can set threads before numpy
    loads; and let a model's own predictions share their tiles over the cores."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gmmcli' has no attribute {name!r}")
    import importlib

    from gmmcli.core.model import share_predictions
    from gmmcli.engines import local

    share_predictions(local.reducer)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
