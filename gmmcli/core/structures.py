"""The fourteen covariance structures by name: scikit-learn's four and mclust's ten more.

Each answers to mclust's name and, for the four, to scikit-learn's too, in any case; its
canonical name (``Covariance.name``, what files and GaussianMixture hold) is
scikit-learn's for the four and mclust's for the others.
"""

from __future__ import annotations

from gmmcli.core.constrained import CONSTRAINED
from gmmcli.core.covariance import Covariance, Diag, Full, Spherical, Tied
from gmmcli.errors import InvalidParameter

_ALL = {c.mclust_name: c for c in (Full(), Tied(), Diag(), Spherical(), *CONSTRAINED)}
MCLUST_ORDER = (
    *("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE"),
    *("VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"),
)
# By canonical name, in mclust's order.
COVARIANCE_TYPES: dict[str, Covariance] = {_ALL[m].name: _ALL[m] for m in MCLUST_ORDER}
SKLEARN_NAMES = ("full", "tied", "diag", "spherical")
# Every name a structure answers to, in lower case: scikit-learn's and mclust's.
_BY_NAME = {n.lower(): c for c in COVARIANCE_TYPES.values() for n in (c.name, c.mclust_name)}
COVARIANCE_CHOICES = ", ".join(
    c.name if c.name == c.mclust_name else f"{c.name} ({c.mclust_name})"
    for c in COVARIANCE_TYPES.values()
)


def find_covariance(name: object) -> Covariance | None:
    """The structure called ``name`` (scikit-learn's or mclust's name, in any case)."""
    return _BY_NAME.get(name.lower()) if isinstance(name, str) else None


def get_covariance(name: str) -> Covariance:
    """The structure called ``name`` (find_covariance), or an InvalidParameter listing the
    names."""
    found = find_covariance(name)
    if found is None:
        raise InvalidParameter("covariance_type", name, f"one of {COVARIANCE_CHOICES}")
    return found
