"""The numerical core: numpy arrays in, numpy arrays out; no I/O, no printing."""

from gmmcli.core.fit import fit
from gmmcli.core.model import FitInfo, GaussianMixture

__all__ = ["FitInfo", "GaussianMixture", "fit"]
