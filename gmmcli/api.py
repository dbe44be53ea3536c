"""The Python API: what the command line does, on arrays, tables and files.

``data`` is a 2-D array, a table (pandas or polars DataFrame, Arrow table, or anything
with the Arrow PyCapsule interface) or a path (CSV, TSV, Parquet; streamed when reading
it whole would take more than ``memory_limit``, default half the memory available).
Keywords are those of :class:`gmmcli.FitOptions` (how to fit), of :class:`gmmcli.Grid`
(select_k's grid) and of :class:`gmmcli.inputs.Source` (how to read: ``columns``,
``exclude``, ``missing``, ``chunk_rows``, ``memory_limit``, ``format``, ``engine``,
``scheduler``); each is checked once, before any data are read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

import pyarrow as pa

from gmmcli import jobs as run
from gmmcli.core.model import GaussianMixture
from gmmcli.core.options import SELECT_DEFAULTS, FitOptions, Grid
from gmmcli.core.select import GridPoint
from gmmcli.inputs import Output, Source


def _typed(keywords: dict, *kinds: type) -> list[dict]:
    """The keywords sorted by the dataclass among ``kinds`` that has a field of that name."""
    parts: list[dict] = [{} for _ in kinds]
    for name, value in keywords.items():
        owner = next(
            (part for part, kind in zip(parts, kinds, strict=True) if _has_field(kind, name)),
            None,
        )
        if owner is None:
            raise TypeError(f"unexpected keyword argument {name!r}")
        owner[name] = value
    return parts


def _has_field(kind: type, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(kind)} and name not in ("data", "weights")


def _options(base: FitOptions, given: dict) -> FitOptions:
    return dataclasses.replace(base, **given) if given else base


def _source(data, keywords: dict, weights=None) -> Source:
    """The Source of ``data`` from the keywords that name Source fields (others: TypeError)."""
    (source_part,) = _typed(keywords, Source)
    return Source(data, weights=weights, **source_part)


def _output(path: str | os.PathLike | None, output_format: str | None = None) -> Output:
    return Output(None if path is None else os.fspath(path), output_format)


def fit(
    data,
    n_components: int | None = None,
    *,
    weights=None,
    options: FitOptions | None = None,
    start: GaussianMixture | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
    class_priors: Mapping[str, float] | None = None,
    **keywords,
) -> GaussianMixture:
    """Fit a mixture of ``n_components`` Gaussians to ``data`` by EM.

    Parameters
    ----------
    data : array of shape (n_samples, n_features), table or path
        The rows. A table's or file's default features are its numeric columns other
        than the weight column and gmmcli's own output columns, as on the command line.
    n_components : int
        K (default: ``start``'s).
    weights : array of shape (n_samples,), str or None
        Frequency weights (a row of weight 3 counts as three rows), or a weight column's
        name.
    options : FitOptions or None
        How to fit; keywords naming FitOptions fields replace its values.
    start : GaussianMixture or None
        Run EM from this model's parameters.
    on_iteration : callable or None
        Called as ``on_iteration(restart, iteration, mean_log_likelihood)`` after every EM
        iteration.
    class_priors : mapping of str to float, or None
        With ``labels`` on every row: each class's prior by name (the mixture's weights;
        by default the classes' shares of the weight).
    **keywords
        Fields of FitOptions (``covariance_type``, ``n_init``, ``seed``, ...) and of
        Source (``columns``, ``labels``, ``memory_limit``, ``engine``, ...). With
        ``labels`` (a column's name or one label per row; an empty one is no label) each
        class names one component: a labelled row stays at its class's component during
        EM (K defaults to the number of classes; more components take the unlabelled rows
        only), and rows all labelled with K equal to it are fitted by one M-step (LDA
        with a tied covariance, QDA with full ones); ``model.classes`` names them.
        ``seed`` defaults to None: fresh entropy, recorded in ``fit_info.seed``, where the
        command line's ``--seed`` defaults to 0; ``seed=0`` gives the command line's model.

    Returns
    -------
    GaussianMixture
        The fitted model, with its training record in ``fit_info`` and the feature
        names of a table or file.

    Examples
    --------
    >>> import numpy as np, gmmcli
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (100, 2))])
    >>> model = gmmcli.fit(X, 2, covariance_type="diag", seed=0)
    >>> model.weights.round(2)
    array([0.67, 0.33])
    >>> model.predict(X[:3])
    array([0, 0, 0])
    """
    fit_part, source_part = _typed(keywords, FitOptions, Source)
    options = _options(options or FitOptions(), fit_part)
    source = Source(data, weights=weights, **source_part)
    return run.fit(
        source,
        n_components,
        options,
        start=start,
        on_iteration=on_iteration,
        class_priors=class_priors,
    )


def select_k(
    data,
    k_values=range(1, 11),
    *,
    weights=None,
    options: FitOptions | None = None,
    jobs: int = 1,
    **keywords,
) -> tuple[list[GridPoint], GaussianMixture | None]:
    """Fit every K in ``k_values`` for every covariance type and rank them (select-k).

    Parameters
    ----------
    data, weights
        As for :func:`fit`.
    k_values : iterable of int
        The numbers of components tried.
    options : FitOptions or None
        What every point is fitted with (default: 3 restarts, the first from hc and the
        others from kmeans, ``init="auto"``, ``tol=1e-6``, ``max_iter=1000``, seed 0);
        keywords naming its fields replace its values.
    jobs : int
        Points fitted in parallel processes.
    **keywords
        Fields of Grid (``covariance_types``, ``criterion``, ``cv_folds``), FitOptions and
        Source.

    Returns
    -------
    points : list of GridPoint
        One row per (K, covariance type): criteria, status, the winner marked ``best``.
    winner : GaussianMixture or None
        The best eligible model (None when every point failed).

    Examples
    --------
    >>> import numpy as np, gmmcli
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (100, 2))])
    >>> points, best = gmmcli.select_k(X, range(1, 4), covariance_types=["diag"])
    >>> best.n_components, best.covariance_type
    (2, 'diag')
    """
    grid_part, fit_part, source_part = _typed(keywords, Grid, FitOptions, Source)
    if "covariance_type" in fit_part:
        raise TypeError("select_k() tries every one of covariance_types=, not covariance_type=")
    grid = Grid(k_values=tuple(k_values), **grid_part)
    options = _options(options or SELECT_DEFAULTS, fit_part)
    source = Source(data, weights=weights, **source_part)
    return run.select_k(source, grid, options, jobs=jobs)


def classify(
    data,
    model: GaussianMixture | str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    probabilities: bool = True,
    only_new_columns: bool = False,
    output_format: str | None = None,
    **keywords,
) -> pa.Table | None:
    """Label every row with its most probable component (and membership probabilities).

    With ``output`` (a path; with ``engine="dask"`` a folder) the rows are read and written
    chunk by chunk, whatever their number; without, the labelled table is returned, and
    an input past ``memory_limit`` is refused.

    Parameters
    ----------
    data
        As for :func:`fit`; a table's or file's columns are taken by the model's feature
        names, wherever they stand.
    model : GaussianMixture or path
        The model, or its JSON file.
    output : path or None
        Where to write the table (format by extension or ``output_format``).
    probabilities : bool
        Add p_0 .. p_{K-1} beside the component column.
    only_new_columns : bool
        Leave the input's columns out.
    **keywords
        Fields of Source.

    Returns
    -------
    pyarrow.Table or None
        The table (when there is no ``output``).

    Examples
    --------
    >>> import numpy as np, gmmcli, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (100, 2))])
    >>> table = pa.table({"a": X[:, 0], "b": X[:, 1], "id": np.arange(300)})
    >>> model = gmmcli.fit(table, 2, columns=["a", "b"], seed=0)
    >>> labelled = gmmcli.classify(table, model)
    >>> labelled.column_names
    ['a', 'b', 'id', 'component', 'p_0', 'p_1']
    >>> labelled["component"].to_pylist()[-2:]
    [1, 1]
    """
    return run.classify(
        _source(data, keywords),
        model,
        _output(output, output_format),
        probabilities=probabilities,
        only_new_columns=only_new_columns,
    )


def impute(
    data,
    model: GaussianMixture | str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    draws: int = 0,
    seed: int | None = 0,
    output_format: str | None = None,
    **keywords,
) -> pa.Table | None:
    """Fill every missing value (null, NaN) of the model's features by its conditional
    mean under the mixture, or write ``draws`` copies of each row drawn from it.

    Rows and other columns are kept as they are; a feature column becomes float64 where
    a cell of it is filled; a row with no feature observed is left as it is. Written and
    returned as :func:`classify` writes and returns its table.

    Parameters
    ----------
    data
        As for :func:`classify`.
    model : GaussianMixture or path
        The model, or its JSON file.
    output : path or None
        Where to write the table (format by extension or ``output_format``).
    draws : int
        0: the conditional means. N > 0: N copies of each row in turn (multiple
        imputation), with a draw column 0 .. N - 1, the gaps of each drawn from the
        conditional mixture: a component by p(k | observed), then a Gaussian draw.
    seed : int or None
        Seed of the draws (each row's from ``[seed, its position]``); None: fresh entropy.
    **keywords
        Fields of Source (``missing`` is always marginal).

    Returns
    -------
    pyarrow.Table or None
        The table (when there is no ``output``).

    Examples
    --------
    >>> import numpy as np, gmmcli, pyarrow as pa
    >>> model = gmmcli.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]]])
    >>> model.feature_names = ["a", "b"]
    >>> table = pa.table({"a": [2.0, 1.0], "b": [None, 3.0]})
    >>> [round(value, 12) for value in gmmcli.impute(table, model)["b"].to_pylist()]
    [1.0, 3.0]
    """
    source = _source(data, keywords)
    return run.impute(source, model, _output(output, output_format), draws=draws, seed=seed)


def score(
    data,
    model: GaussianMixture | str | os.PathLike,
    per_sample: str | os.PathLike | None = None,
    *,
    weights: str | None = None,
    **keywords,
) -> dict[str, float]:
    """The log-likelihood, BIC and AIC of ``data`` under ``model`` (read chunk by chunk
    past ``memory_limit``), each row's log_likelihood written to ``per_sample`` if given.

    Returns
    -------
    dict
        n_samples, total_weight, log_likelihood, mean_log_likelihood, bic, aic.

    Examples
    --------
    >>> import numpy as np, gmmcli
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (100, 2))])
    >>> model = gmmcli.fit(X, 2, seed=0)
    >>> round(gmmcli.score(X, model)["mean_log_likelihood"], 2)
    -3.46
    """
    return run.score(_source(data, keywords, weights), model, _output(per_sample))
