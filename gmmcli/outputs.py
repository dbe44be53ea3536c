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
from gmmcli.core.em import Reducer, has_gaps
from gmmcli.core.model import RowOutputs
from gmmcli.io import tables

SUM_ROWS = 4096


@dataclass
class RowSums:
    """Column sums of per-row values that do not depend on where the rows were cut.

    Values are summed in blocks of SUM_ROWS rows at fixed positions of the input, and the
    blocks' sums are added in order. A piece of the input (rows ``start`` on) keeps its
    rows before the first block boundary (``head``) and, if it holds a boundary, those
    after the last one (``tail``) as they are, so that pieces added in row order join
    them into whole blocks. ``RowSums()`` is the empty sum.
    """

    start: int | None = None
    head: np.ndarray | None = None
    blocks: list[np.ndarray] = field(default_factory=list)
    tail: np.ndarray | None = None

    @classmethod
    def of(cls, values: np.ndarray, start: int) -> RowSums:
        """The sums of ``values`` (rows x columns), rows ``start`` on of the input."""
        first = min(len(values), -start % SUM_ROWS)
        if first == len(values) and (start + first) % SUM_ROWS:
            return cls(start, values.copy())  # no block boundary inside
        cuts = range(first, len(values) - SUM_ROWS + 1, SUM_ROWS)
        last = first + len(cuts) * SUM_ROWS
        blocks = [_block_sum(values[cut : cut + SUM_ROWS]) for cut in cuts]
        return cls(start, values[:first].copy(), blocks, values[last:].copy())  # not views:
        # they would keep every chunk's values while the sums of later chunks are taken

    def __add__(self, other: RowSums) -> RowSums:
        """These sums and those of the rows that follow them."""
        if self.start is None or other.start is None:
            return other if self.start is None else self
        if self.tail is None:
            head = np.concatenate([self.head, other.head])
            return RowSums(self.start, head, other.blocks, other.tail)
        middle = np.concatenate([self.tail, other.head])
        if other.tail is None:
            return RowSums(self.start, self.head, self.blocks, middle)
        blocks = [*self.blocks, _block_sum(middle), *other.blocks]
        return RowSums(self.start, self.head, blocks, other.tail)

    def total(self) -> np.ndarray:
        """The sums: the head's, each block's and the tail's, added in order."""
        if self.start is None:
            return np.zeros(0)
        total = _block_sum(self.head)
        for part in [*self.blocks, *([] if self.tail is None else [_block_sum(self.tail)])]:
            total = total + part
        return total


def _block_sum(values: np.ndarray) -> np.ndarray:
    """Column sums, each of a contiguous copy of the column: the same rounding for every
    path that holds these rows, wherever they lie in memory."""
    return np.ascontiguousarray(values.T).sum(axis=1)


@dataclass
class Scores:
    """Sums over scored rows: how many, how many of them on fewer features (missing some),
    and (by row position: RowSums) their total weight and weighted log-likelihood."""

    n_samples: int = 0
    sums: RowSums = field(default_factory=RowSums)
    n_partial: int = 0

    def __add__(self, other: Scores) -> Scores:
        return Scores(
            self.n_samples + other.n_samples,
            self.sums + other.sums,
            self.n_partial + other.n_partial,
        )


@dataclass(frozen=True)
class Labelled:
    """classify's summary: the rows labelled, and the columns of an earlier classify that
    it replaces (the same in every chunk)."""

    n_samples: int = 0
    replaced: tuple[str, ...] = ()

    def __add__(self, other: Labelled) -> Labelled:
        return Labelled(self.n_samples + other.n_samples, self.replaced or other.replaced)


@dataclass(frozen=True)
class Classify:
    """classify: a component column (and p_k columns), after the input's columns unless
    ``only_new_columns``; summarised by Labelled."""

    model: GaussianMixture
    probabilities: bool = True
    only_new_columns: bool = False

    @property
    def keeps_input(self) -> bool:
        return not self.only_new_columns

    def __call__(
        self, table: pa.Table, features: tables.Features, reducer: Reducer
    ) -> tuple[pa.Table, Labelled]:
        labelled = classified(table, features, self, reducer)
        summary = Labelled(int((~features.missing).sum()), tuple(replaced_columns(table)))
        return labelled, summary


@dataclass(frozen=True)
class Score:
    """score: the input with a log_likelihood column, summarised by Scores; the input's
    other columns are read only for a per-sample table."""

    model: GaussianMixture
    keeps_input: bool = False

    def __call__(
        self, table: pa.Table, features: tables.Features, reducer: Reducer
    ) -> tuple[pa.Table, Scores]:
        return scored(table, features, self.model, reducer)


@dataclass
class Kept:
    """A prediction whose output tables are kept (``kept``) as they are made."""

    prediction: Classify | Score
    kept: list[pa.Table] = field(default_factory=list)

    @property
    def keeps_input(self) -> bool:
        return self.prediction.keeps_input

    def __call__(self, table: pa.Table, features: tables.Features, reducer: Reducer):
        out, summary = self.prediction(table, features, reducer)
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
    table: pa.Table, features: tables.Features, classify: Classify, reducer: Reducer
) -> pa.Table:
    """The table with a component column (and p_k columns); rows marked missing get nulls.

    Each component's probabilities are computed into an array of their own, which its
    column takes as its buffer (no copy)."""
    n_rows, n_components = len(features.missing), classify.model.n_components
    outputs = RowOutputs(
        probabilities=np.empty((n_components, n_rows)) if classify.probabilities else None,
        labels=np.empty(n_rows, dtype=np.int64),
    )
    _predict(features, classify.model, outputs, reducer)
    keep = ~features.missing
    new = {"component": _column(outputs.labels, keep)}
    if classify.probabilities:
        new.update({f"p_{k}": _column(p, keep) for k, p in enumerate(outputs.probabilities)})
    if classify.only_new_columns:
        return pa.table(new)
    table = table.drop_columns(replaced_columns(table))
    for name, column in new.items():
        table = table.append_column(name, column)
    return table


def scored(
    table: pa.Table, features: tables.Features, mixture: GaussianMixture, reducer: Reducer
) -> tuple[pa.Table, Scores]:
    """The table with a log_likelihood column, and the sums over its rows."""
    keep = ~features.missing
    per_row = np.empty(len(keep))
    _predict(features, mixture, RowOutputs(log_likelihood=per_row), reducer)
    weights = np.ones(len(keep)) if features.weights is None else features.weights
    values = np.zeros((len(keep), 2))
    values[keep, 0] = weights[keep]
    values[keep, 1] = weights[keep] * per_row[keep]
    partial = int(has_gaps(features.X) and (np.isnan(features.X).any(axis=1) & keep).sum())
    scores = Scores(int(keep.sum()), RowSums.of(values, features.first_row), partial)
    return table.append_column("log_likelihood", _column(per_row, keep)), scores


def _predict(
    features: tables.Features, mixture: GaussianMixture, outputs: RowOutputs, reducer: Reducer
) -> None:
    """mixture.predict_into() of every row, a missing one taken at the mixture's centre
    (its outputs are dropped): rows keep their positions, so their tiles too."""
    X = features.X
    if features.missing.any():
        X = np.where(features.missing[:, None], mixture.centre, X)
    mixture.predict_into(X, outputs, first_row=features.first_row, reducer=reducer)


def _column(values: np.ndarray, keep: np.ndarray) -> pa.Array:
    """Values as an Arrow column, nulls where a row is not kept; built on the values'
    buffer (pa.array would import pandas where it is installed)."""
    if keep.all():
        validity, null_count = None, 0
    else:
        values = np.where(keep, values, 0)
        validity, null_count = np.packbits(keep, bitorder="little"), int((~keep).sum())
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype),
        len(values),
        [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values)],
        null_count,
    )
