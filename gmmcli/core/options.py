"""What a fit or a model selection is asked to do: typed options, each checked once.

Every constraint stands in one table (``FIT_RULES``, ``GRID_RULES``) and is checked when
the options are made, before any data are read; an :class:`InvalidParameter` names the
parameter. The lists of choices live here, and the command line builds its choices
from them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gmmcli.core.init import HC_ROWS, INIT_CHOICES, INIT_SAMPLE
from gmmcli.core.structures import (
    COVARIANCE_CHOICES,
    COVARIANCE_TYPES,
    SKLEARN_NAMES,
    find_covariance,
)
from gmmcli.errors import InvalidParameter

ALL_NAMES = tuple(COVARIANCE_TYPES)  # the fourteen, in mclust's order
GROUPS = {"all": ALL_NAMES, "sklearn": SKLEARN_NAMES}
CRITERIA = ("bic", "aic", "icl", "cv")
DTYPES = ("float64", "float32")


class Rule(NamedTuple):
    """What a value must pass (``test``), and how a message says it (``requirement``)."""

    test: Callable[[object], bool]
    requirement: str


def one_of(choices: Sequence[str]) -> Rule:
    return Rule(lambda value: value in choices, f"one of {', '.join(choices)}")


def whole_number(at_least: int) -> Rule:
    return Rule(
        lambda value: _is_integer(value) and value >= at_least,
        f"a whole number of at least {at_least}",
    )


def optional(rule: Rule) -> Rule:
    """``rule``, or None (what the parameter defaults to)."""
    return Rule(lambda value: value is None or rule.test(value), rule.requirement)


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_non_negative(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0


NON_NEGATIVE = Rule(_finite_non_negative, "a finite number of at least 0")
COVARIANCE = Rule(
    lambda value: find_covariance(value) is not None,
    f"one of {COVARIANCE_CHOICES}: scikit-learn's or mclust's name, in any case",
)
OPTIONAL_FLAG = Rule(lambda value: value in (None, True, False), "None, True or False")


class Each(NamedTuple):
    """A non-empty list whose every item passes ``rule`` (a message names the first that
    does not)."""

    rule: Rule


def check(options: object, rules: dict[str, Rule | Each]) -> None:
    """An InvalidParameter for the first field of ``options`` that breaks its rule."""
    for name, rule in rules.items():
        value = getattr(options, name)
        if isinstance(rule, Each):
            if len(value) == 0:
                raise InvalidParameter(name, value, "a non-empty list")
            for item in value:
                if not rule.rule.test(item):
                    requirement = f"a list of which each is {rule.rule.requirement}"
                    raise InvalidParameter(name, item, requirement)
        elif not rule.test(value):
            raise InvalidParameter(name, value, rule.requirement)


@dataclass(frozen=True, eq=False)
class FitOptions:
    """How a mixture is fitted, whatever the rows: checked on construction.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance structure; mclust's names for the same ("VVV", "EEE", "VVI",
        "VII", in any case) are taken and kept as scikit-learn's.
    init : {"kmeans", "kmeans++", "random", "random-from-data", "hc", "auto"}
        How each restart starts; "hc" is mclust's hierarchical clustering, "auto" starts
        the first restart from hc and the others from kmeans.
    init_sample : int
        k-means++ seeds on a weighted sample of about this many rows when there are more
        (0: on every row).
    hc_rows : int
        hc clusters at most this many distinct rows, a sample drawn by weight when there
        are more (at least the number of components).
    n_init : int
        Restarts; the best sound one wins.
    max_iter : int
        EM iterations at most per restart.
    tol : float
        EM stops when the mean log-likelihood gains less than this (0: run ``max_iter``).
    reg_covar : float
        Added to every covariance diagonal.
    seed : int or None
        Restart i draws from ``SeedSequence(seed).spawn(n_init)[i]``; None (the default)
        draws fresh entropy, recorded in the model. The command line's ``--seed``
        defaults to 0 instead.
    dtype : {"float64", "float32"}
        Precision of the E-step (statistics are summed in float64 either way).
    weights_init, means_init, precisions_init : array or None
        A start in scikit-learn's shapes and meaning; components then keep the given
        order unless ``canonical_order`` says otherwise.
    canonical_order : bool or None
        Sort components by descending weight, ties by the means (None: unless a start is
        given).

    Examples
    --------
    >>> FitOptions(covariance_type="diag", n_init=3).n_init
    3
    >>> FitOptions(tol=-1)
    Traceback (most recent call last):
    ...
    gmmcli.errors.InvalidParameter: tol must be a finite number of at least 0, got -1
    """

    covariance_type: str = "full"
    init: str = "kmeans"
    init_sample: int = INIT_SAMPLE
    hc_rows: int = HC_ROWS
    n_init: int = 1
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    seed: int | None = None
    dtype: str = "float64"
    weights_init: np.ndarray | None = field(default=None, repr=False)
    means_init: np.ndarray | None = field(default=None, repr=False)
    precisions_init: np.ndarray | None = field(default=None, repr=False)
    canonical_order: bool | None = None

    def __post_init__(self) -> None:
        check(self, FIT_RULES)
        object.__setattr__(self, "covariance_type", find_covariance(self.covariance_type).name)

    @property
    def em_dtype(self) -> type:
        """The E-step's numpy scalar type."""
        return np.dtype(self.dtype).type

    def init_for(self, restart: int) -> str:
        """The method restart ``restart`` starts with: ``init``, or for "auto" hc for the
        first restart and kmeans for the others."""
        if self.init == "auto":
            return "hc" if restart == 0 else "kmeans"
        return self.init

    @property
    def given_start(self) -> tuple[bool, bool]:
        """(any, all) of weights_init, means_init and precisions_init are given."""
        given = [v is not None for v in (self.weights_init, self.means_init, self.precisions_init)]
        return any(given), all(given)


FIT_RULES: dict[str, Rule] = {
    "covariance_type": COVARIANCE,
    "init": one_of(INIT_CHOICES),
    "init_sample": whole_number(0),
    "hc_rows": whole_number(1),
    "n_init": whole_number(1),
    "max_iter": whole_number(1),
    "tol": NON_NEGATIVE,
    "reg_covar": NON_NEGATIVE,
    "seed": optional(whole_number(0)),
    "dtype": one_of(DTYPES),
    "canonical_order": OPTIONAL_FLAG,
}

DEFAULT_OPTIONS = FitOptions()
# What select-k fits every grid point with unless told otherwise: tight, so that
# criteria compare converged fits; each point's first restart from mclust's start (hc),
# the others from k-means.
SELECT_DEFAULTS = FitOptions(init="auto", n_init=3, max_iter=1000, tol=1e-6, seed=0)


@dataclass(frozen=True)
class Grid:
    """The models a selection compares, and how it ranks them.

    Parameters
    ----------
    k_values : sequence of int
        Numbers of components tried.
    covariance_types : sequence of str
        Covariance structures tried, by scikit-learn's or mclust's names, "all" for the
        fourteen (the default) or "sklearn" for scikit-learn's four (a structure named
        twice is fitted once).
    criterion : {"bic", "aic", "icl", "cv"}
        What picks the winner (cv: held-out mean log-likelihood, higher is better).
    cv_folds : int or None
        Cross-validation folds: 5 by default with ``criterion="cv"``, and any other
        criterion can be given a cv column too.
    """

    k_values: tuple[int, ...] = tuple(range(1, 11))
    covariance_types: tuple[str, ...] = ALL_NAMES
    criterion: str = "bic"
    cv_folds: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "k_values", tuple(self.k_values))
        types = self.covariance_types
        types = (types,) if isinstance(types, str) else types
        types = [t for given in types for t in _expanded(given)]
        object.__setattr__(self, "covariance_types", tuple(types))
        if self.criterion == "cv" and self.cv_folds is None:
            object.__setattr__(self, "cv_folds", 5)
        check(self, GRID_RULES)
        names = dict.fromkeys(find_covariance(t).name for t in self.covariance_types)
        object.__setattr__(self, "covariance_types", tuple(names))  # full,VVV: fitted once


def _expanded(name: object) -> tuple[object, ...]:
    """The structures a grid's entry names: "all" the fourteen, "sklearn" scikit-learn's
    four (in any case)."""
    return GROUPS.get(name.lower(), (name,)) if isinstance(name, str) else (name,)


GRID_RULES: dict[str, Rule | Each] = {
    "k_values": Each(whole_number(1)),
    "covariance_types": Each(COVARIANCE),
    "criterion": one_of(CRITERIA),
    "cv_folds": optional(whole_number(2)),
}
