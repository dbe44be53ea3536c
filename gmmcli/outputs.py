"""What classify, score and impute make of a table of input rows, wherever the rows are read.

The local engine calls these chunk by chunk, the cluster engine partition by partition
(gmmcli.inputs.predict_rows); both therefore write the same columns and sum the same
scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gmmcli.core import GaussianMixture
from gmmcli.core.em import Reducer, add_up, has_gaps
from gmmcli.core.model import RowOutputs
from gmmcli.core.options import check, whole_number
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
    and (by row position: RowSums) their total weight and weighted log-likelihood; with
    labels, ClassScores."""

    n_samples: int = 0
    sums: RowSums = field(default_factory=RowSums)
    n_partial: int = 0
    classes: ClassScores | None = None
    replaced: tuple[str, ...] = ()  # the input's log_likelihood column, an earlier score's

    def __add__(self, other: Scores) -> Scores:
        return Scores(
            self.n_samples + other.n_samples,
            self.sums + other.sums,
            self.n_partial + other.n_partial,
            add_up([self.classes, other.classes]),
            self.replaced or other.replaced,
        )


@dataclass(frozen=True)
class ClassScores:
    """How a model of classes predicts the labelled rows scored: (by row position) their
    weight, the weight of those whose most probable class is not their label, and Σ w ·
    Σ_c (p_c − [c = label])² (Brier); and the weight of each (label, predicted class)
    pair, (C, C) (exact for whole-number weights, else to rounding)."""

    sums: RowSums
    confusion: np.ndarray

    def __add__(self, other: ClassScores) -> ClassScores:
        return ClassScores(self.sums + other.sums, self.confusion + other.confusion)

    @classmethod
    def of(
        cls, probabilities: np.ndarray, codes: np.ndarray, weights: np.ndarray, first_row: int
    ) -> ClassScores:
        """From each row's class probabilities (n, C), label (its class, -1 for none or
        a row not scored) and weight."""
        n_classes = probabilities.shape[1]
        labelled = codes >= 0
        w = np.where(labelled, weights, 0.0)
        predicted = probabilities.argmax(axis=1)
        truth = np.zeros_like(probabilities)
        truth[np.flatnonzero(labelled), codes[labelled]] = 1.0
        brier = np.square(probabilities - truth).sum(axis=1)
        values = np.column_stack([w, w * (predicted != codes), w * brier])
        pairs = codes[labelled] * n_classes + predicted[labelled]
        confusion = np.bincount(pairs, w[labelled], n_classes * n_classes)
        return cls(RowSums.of(values, first_row), confusion.reshape(n_classes, n_classes))


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
    """classify: a component column (and p_k columns), and for a model with classes a
    predicted_label column (and p_label_<class> columns), after the input's columns
    unless ``only_new_columns``; summarised by Labelled."""

    model: GaussianMixture
    probabilities: bool = True
    only_new_columns: bool = False

    copies = 1

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
    """score: the input with a log_likelihood column, summarised by Scores (with
    ClassScores for labelled rows and a model of classes); the input's other columns are
    read only for a per-sample table."""

    model: GaussianMixture
    keeps_input: bool = False
    copies = 1

    def __call__(
        self, table: pa.Table, features: tables.Features, reducer: Reducer
    ) -> tuple[pa.Table, Scores]:
        return scored(table, features, self.model, reducer)


@dataclass(frozen=True)
class Filled:
    """impute's summary: the rows filled (some feature observed) and those left empty
    (none), the cells filled, whether it replaces an earlier draw column, and for the
    types of the features written: the columns written as float64 in some chunk for a
    cell filled there (``widened``), and the columns of other numbers written as they
    are in some chunk that float64 would write otherwise (``unlike``: 1.7e+12)."""

    n_samples: int = 0
    n_empty: int = 0
    n_cells: int = 0
    replaced: tuple[str, ...] = ()
    widened: frozenset[str] = frozenset()
    unlike: frozenset[str] = frozenset()

    def __add__(self, other: Filled) -> Filled:
        return Filled(
            self.n_samples + other.n_samples,
            self.n_empty + other.n_empty,
            self.n_cells + other.n_cells,
            self.replaced or other.replaced,
            self.widened | other.widened,
            self.unlike | other.unlike,
        )


@dataclass(frozen=True)
class Impute:
    """impute: the input with each missing feature value filled by its conditional mean
    or, with ``draws`` > 0, ``draws`` copies of each row in turn with a draw column
    (0 .. draws - 1), their gaps drawn from the conditional mixture (``seed``: RowOutputs);
    summarised by Filled."""

    model: GaussianMixture
    draws: int = 0
    seed: int = 0
    keeps_input = True

    @property
    def copies(self) -> int:
        return max(1, self.draws)

    def __post_init__(self) -> None:
        check(self, {"draws": whole_number(0), "seed": whole_number(0)})

    def __call__(
        self, table: pa.Table, features: tables.Features, reducer: Reducer
    ) -> tuple[pa.Table, Filled]:
        return imputed(table, features, self, reducer)


@dataclass
class Kept:
    """A prediction whose output tables are kept (``kept``) as they are made."""

    prediction: Classify | Score | Impute
    kept: list[pa.Table] = field(default_factory=list)

    @property
    def keeps_input(self) -> bool:
        return self.prediction.keeps_input

    @property
    def copies(self) -> int:
        return self.prediction.copies

    def __call__(self, table: pa.Table, features: tables.Features, reducer: Reducer):
        out, summary = self.prediction(table, features, reducer)
        self.kept.append(out)
        return out, summary


def replaced_columns(table: pa.Table) -> list[str]:
    """Columns of an earlier classify that a new one replaces (not score's log_likelihood,
    generate's true_component and true_label, nor impute's draw)."""
    return [name for name in table.column_names if tables.CLASSIFY_COLUMNS.fullmatch(name)]


def classified(
    table: pa.Table, features: tables.Features, classify: Classify, reducer: Reducer
) -> pa.Table:
    """The table with a component column (and p_k columns), and for a model with classes
    predicted_label (and p_label_<class>: Classes.probabilities); rows marked missing
    get nulls.

    Each component's probabilities are computed into an array of their own, which its
    column takes as its buffer (no copy)."""
    n_rows, n_components = len(features.missing), classify.model.n_components
    classes = classify.model.classes
    outputs = RowOutputs(
        probabilities=np.empty((n_components, n_rows))
        if classify.probabilities or classes is not None
        else None,
        labels=np.empty(n_rows, dtype=np.int64),
    )
    _predict(features, classify.model, outputs, reducer)
    keep = ~features.missing
    new = {"component": _column(outputs.labels, keep)}
    if classify.probabilities:
        new.update({f"p_{k}": _column(p, keep) for k, p in enumerate(outputs.probabilities)})
    if classes is not None:
        by_class = classes.probabilities(outputs.probabilities.T)
        chosen = np.asarray(classes.names, dtype=object)[by_class.argmax(axis=1)]
        new["predicted_label"] = pa.array(np.where(keep, chosen, None), pa.string())
        if classify.probabilities:
            new.update(
                {
                    f"p_label_{name}": _column(np.ascontiguousarray(p), keep)
                    for name, p in zip(classes.names, by_class.T, strict=True)
                }
            )
    if classify.only_new_columns:
        return pa.table(new)
    table = table.drop_columns(replaced_columns(table))
    for name, column in new.items():
        table = table.append_column(name, column)
    return table


def scored(
    table: pa.Table, features: tables.Features, mixture: GaussianMixture, reducer: Reducer
) -> tuple[pa.Table, Scores]:
    """The table with a log_likelihood column (replacing one there), and the sums over its
    rows."""
    keep = ~features.missing
    per_row = np.empty(len(keep))
    labelled = features.labels is not None and mixture.classes is not None
    probabilities = np.empty((mixture.n_components, len(keep))) if labelled else None
    _predict(features, mixture, RowOutputs(per_row, probabilities), reducer)
    weights = np.ones(len(keep)) if features.weights is None else features.weights
    values = np.zeros((len(keep), 2))
    values[keep, 0] = weights[keep]
    values[keep, 1] = weights[keep] * per_row[keep]
    partial = int(has_gaps(features.X) and (np.isnan(features.X).any(axis=1) & keep).sum())
    classes = None
    if labelled:
        codes = np.where(keep, tables.class_codes(features.labels, mixture.classes.names), -1)
        by_class = mixture.classes.probabilities(probabilities.T)
        classes = ClassScores.of(by_class, codes, weights, features.first_row)
    replaced = [name for name in ["log_likelihood"] if name in table.column_names]
    sums = RowSums.of(values, features.first_row)
    scores = Scores(int(keep.sum()), sums, partial, classes, tuple(replaced))
    table = table.drop_columns(replaced)
    return table.append_column("log_likelihood", _column(per_row, keep)), scores


def imputed(
    table: pa.Table, features: tables.Features, impute: Impute, reducer: Reducer
) -> tuple[pa.Table, Filled]:
    """The table with its features' gaps filled (Impute), and what was filled.

    A feature column with no cell filled keeps its type and values; one with a cell filled
    becomes float64. Rows left out (no feature observed) keep their cells as they are.
    """
    n_rows, n_features = features.X.shape
    copies = impute.copies
    if impute.draws:
        outputs = RowOutputs(draws=np.empty((copies, n_rows, n_features)), seed=impute.seed)
    else:
        outputs = RowOutputs(imputed=np.empty((n_rows, n_features)))
    _predict(features, impute.model, outputs, reducer)
    values = outputs.imputed[None] if outputs.draws is None else outputs.draws
    left_out = np.repeat(features.missing, copies)
    filled = np.isnan(features.X) & ~features.missing[:, None]
    replaced = [name for name in ["draw"] if impute.draws and name in table.column_names]
    out = table.drop_columns(replaced)
    if impute.draws:
        out = out.take(np.repeat(np.arange(n_rows), copies))
    unlike = set()
    for j, name in enumerate(features.names):
        column = table.column(name)
        if not filled[:, j].any():
            if column.type != pa.float64() and not tables.written_alike(column):
                unlike.add(name)
            continue
        cells = np.where(left_out, np.nan, values[:, :, j].T.ravel())
        kept = ~(left_out & np.repeat(column.is_null().to_numpy(zero_copy_only=False), copies))
        out = out.set_column(out.column_names.index(name), name, _column(cells, kept))
    if impute.draws:
        draw = np.tile(np.arange(copies, dtype=np.int64), n_rows)
        out = out.append_column("draw", _column(draw, np.ones(len(draw), bool)))
    summary = Filled(
        int(n_rows - features.missing.sum()),
        int(features.missing.sum()),
        int(filled.sum()),
        tuple(replaced),
        frozenset(
            name
            for name, any_filled in zip(features.names, filled.any(axis=0), strict=True)
            if any_filled and table.schema.field(name).type != pa.float64()
        ),
        frozenset(unlike),
    )
    return out, summary


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
