"""gmmcli: Gaussian mixture models fitted by EM."""

__version__ = "0.1.0"
