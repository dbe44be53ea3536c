"""The numerical core: numpy arrays in, numpy arrays out; no I/O, no printing, no threads.

Every pass over the rows goes through a reducer (``gmmcli.core.em.Reducer``) that the
caller gives; ``SERIAL`` runs the blocks one after the other.
"""

from gmmcli.core.em import SERIAL, InMemoryRows, Reducer, RowSource
from gmmcli.core.fit import fit_rows
from gmmcli.core.model import FitInfo, GaussianMixture, RowOutputs
from gmmcli.core.options import FitOptions, Grid
from gmmcli.core.select import GridPoint, select_rows

__all__ = [
    "SERIAL",
    "FitInfo",
    "FitOptions",
    "GaussianMixture",
    "Grid",
    "GridPoint",
    "InMemoryRows",
    "Reducer",
    "RowOutputs",
    "RowSource",
    "fit_rows",
    "select_rows",
]
