"""What classify and score make of a table of input rows, wherever the rows are read.

The local engine calls these chunk by chunk, the cluster engine partition by partition
(gmmcli.inputs.predict_rows); both therefore write the same columns and sum the same
scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gmmcli.core import GaussianMixture
from gmmcli.io import tables


@dataclass
class Scores:
    """Sums over scored rows: how many, their total weight and log-likelihood."""

    n_samples: int = 0
    total_weight: float = 0.0
    log_likelihood: float = 0.0

    def __add__(self, other: Scores) -> Scores:
        return Scores(
            self.n_samples + other.n_samples,
            self.total_weight + other.total_weight,
            self.log_likelihood + other.log_likelihood,
        )


@dataclass(frozen=True)
class Classify:
    """classify: a component column (and p_k columns), after the input's columns unless
    ``only_new_columns``; summarised by (rows predicted, columns of an earlier classify
    replaced)."""

    model: GaussianMixture
    probabilities: bool = True
    only_new_columns: bool = False

    @property
    def keeps_input(self) -> bool:
        return not self.only_new_columns

    def __call__(
        self, table: pa.Table, features: tables.Features
    ) -> tuple[pa.Table, tuple[int, list[str]]]:
        labelled = classified(
            table, features, self.model, self.probabilities, self.only_new_columns
        )
        return labelled, (int((~features.missing).sum()), replaced_columns(table))


@dataclass(frozen=True)
class Score:
    """score: the input with a log_likelihood column, summarised by Scores; the input's
    other columns are read only for a per-sample table."""

    model: GaussianMixture
    keeps_input: bool = False

    def __call__(self, table: pa.Table, features: tables.Features) -> tuple[pa.Table, Scores]:
        return scored(table, features, self.model)


@dataclass
class Kept:
    """A prediction whose output tables are kept (``kept``) as they are made."""

    prediction: Classify | Score
    kept: list[pa.Table] = field(default_factory=list)

    @property
    def keeps_input(self) -> bool:
        return self.prediction.keeps_input

    def __call__(self, table: pa.Table, features: tables.Features):
        out, summary = self.prediction(table, features)
        self.kept.append(out)
        return out, summary


def replaced_columns(table: pa.Table) -> list[str]:
    """Columns of an earlier classify that a new one replaces."""
    return [
        name
        for name in table.column_names
        if tables.GMMCLI_COLUMNS.fullmatch(name) and name != "true_component"
    ]


def classified(
    table: pa.Table,
    features: tables.Features,
    mixture: GaussianMixture,
    probabilities: bool = True,
    only_new_columns: bool = False,
) -> pa.Table:
    """The table with a component column (and p_k columns); rows marked missing get nulls."""
    keep = ~features.missing
    proba = mixture.predict_proba(features.X[keep])
    new = {"component": _column(proba.argmax(axis=1), keep)}
    if probabilities:
        new.update({f"p_{k}": _column(proba[:, k], keep) for k in range(mixture.n_components)})
    if only_new_columns:
        return pa.table(new)
    table = table.drop_columns(replaced_columns(table))
    for name, column in new.items():
        table = table.append_column(name, column)
    return table


def scored(
    table: pa.Table, features: tables.Features, mixture: GaussianMixture
) -> tuple[pa.Table, Scores]:
    """The table with a log_likelihood column, and the sums over its rows."""
    keep = ~features.missing
    per_row = mixture.score_samples(features.X[keep])
    weights = np.ones(len(per_row)) if features.weights is None else features.weights[keep]
    scores = Scores(int(keep.sum()), float(weights.sum()), float(weights @ per_row))
    return table.append_column("log_likelihood", _column(per_row, keep)), scores


def _column(values: np.ndarray, keep: np.ndarray) -> pa.Array:
    """Values for the kept rows, nulls elsewhere, as an Arrow column."""
    full = np.zeros(len(keep), dtype=values.dtype)
    full[keep] = values
    return pa.array(full, mask=~keep)
