"""The jobs behind the commands and the Python API: read through the one way in
(gmmcli.inputs), run the core, hand back or write the result.

Each takes typed requests (a Source, FitOptions, a Grid, an Output) and a Report for what
a person reads; none parses flags or prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gmmcli.core import discriminant
from gmmcli.core import select as selection
from gmmcli.core.blas import one_blas_thread
from gmmcli.core.em import SERIAL, has_gaps
from gmmcli.core.fit import check_components, fit_rows
from gmmcli.core.generate import random_mixture
from gmmcli.core.labels import fit_labelled
from gmmcli.core.model import Classes, GaussianMixture, aic, bic
from gmmcli.core.options import (
    COVARIANCE,
    SELECT_DEFAULTS,
    FitOptions,
    Grid,
    Rule,
    check,
    whole_number,
)
from gmmcli.engines import local, memory
from gmmcli.errors import GMMWarning, InvalidParameter, UserError
from gmmcli.inputs import (
    NO_OUTPUT,
    QUIET,
    Output,
    Report,
    Source,
    fits_in_memory,
    open_rows,
    predict_rows,
    require_one_file,
    select,
)
from gmmcli.io import gridtable, modelfile, tables
from gmmcli.io.atomic import check_distinct, check_output_path, replaced_together
from gmmcli.io.tables import parse_column_list  # noqa: F401 (the one comma-list parser)
from gmmcli.outputs import Classify, Filled, Impute, Kept, Labelled, Score, Scores
from gmmcli.resume import GridTable


@one_blas_thread()
def fit(
    source: Source,
    n_components: int | None,
    options: FitOptions,
    *,
    start: GaussianMixture | None = None,
    report: Report = QUIET,
    on_iteration: Callable[[int, int, float], None] | None = None,
    class_priors: Mapping[str, float] | None = None,
) -> GaussianMixture:
    """A mixture of ``n_components`` fitted to ``source``: EM from ``start``'s parameters
    when given (K, the covariance type and the feature columns default to its own).
    ``on_iteration(restart, iteration, mean_log_likelihood)`` follows EM. With labels
    (``source.labels``), a fit to labelled rows (core.labels.fit_labelled: K defaults to
    the classes'; ``class_priors`` by class name, when every row is labelled)."""
    if source.labels is None and class_priors is not None:
        raise UserError("{class_priors} needs {labels}", ("class_priors", "labels"))
    if start is not None and source.labels is not None and start.classes is None:
        raise UserError(
            "{start} has no classes to keep {labels} to: give a model fitted with labels",
            ("start", "labels"),
        )
    if start is not None:
        n_components, options, source = _from_start(start, n_components, options, source)
        if start.classes is not None:  # its components keep their order and classes
            options = dataclasses.replace(options, canonical_order=False)
    if n_components is None and source.labels is None:
        raise UserError(
            "give the number of components with {n_components} (or {start})",
            ("n_components", "start"),
        )
    if n_components is not None:
        check_components(n_components)
    source.refuse_predictions_as_features()
    require_one_file(source)
    workers = local.default_threads()
    core = core_needs(options, n_components or 1, workers, gaps=source.missing)
    classes = None if start is None or start.classes is None else start.classes
    if classes is not None:  # (a joined model's mixtures are its old parameters)
        classes = Classes(classes.names, classes.owners)
    known = None if classes is None else classes.names
    with open_rows(source, report, core, known) as data:
        steps = options.max_iter * options.n_init
        with report.progress(steps, "EM") as advance:

            def iterated(restart: int, iteration: int, mean_ll: float) -> None:
                advance(1, f"restart {restart}, iteration {iteration}: {mean_ll:.6g}")
                if on_iteration is not None:
                    on_iteration(restart, iteration, mean_ll)

            if data.class_names is not None:
                named = n_components or len(data.class_names)
                return fit_labelled(
                    data.rows,
                    classes or Classes.named(data.class_names, named),
                    options,
                    reducer=data.reducer,
                    feature_names=data.names,
                    class_priors=_priors(class_priors, data.class_names),
                    on_iteration=iterated,
                )
            model = fit_rows(
                data.rows,
                n_components,
                options,
                reducer=data.reducer,
                feature_names=data.names,
                on_iteration=iterated,
            )
            model.classes = classes
            return model


def parse_class_priors(text: str | None) -> dict[str, float] | None:
    """--class-priors NAME=P,NAME=P as a mapping (None when not given)."""
    if text is None:
        return None
    priors = {}
    for item in text.split(","):
        name, equals, number = item.rpartition("=")
        try:
            prior = float(number)
        except ValueError:
            prior = None
        if not equals or not name.strip() or prior is None:
            raise UserError(
                f"{{class_priors}} item {item!r} is not NAME=P (a class and a number)",
                ("class_priors",),
            )
        if name.strip() in priors:
            raise UserError(
                f"{{class_priors}} names class '{name.strip()}' twice", ("class_priors",)
            )
        priors[name.strip()] = prior
    return priors


def _priors(priors: Mapping[str, float] | None, names: list[str]) -> np.ndarray | None:
    """Class priors by name as a vector in class order: every class's, no other."""
    if priors is None:
        return None
    unknown = sorted(set(priors) - set(names))
    if unknown:
        raise UserError(
            f"{{class_priors}} names class '{unknown[0]}', which no row has "
            f"(the classes: {', '.join(names)})",
            ("class_priors",),
        )
    missing = [name for name in names if name not in priors]
    if missing:
        raise UserError(
            f"{{class_priors}} lacks class '{missing[0]}': give every class's prior",
            ("class_priors",),
        )
    vector = np.array([priors[name] for name in names], dtype=float)
    if not np.all(np.isfinite(vector) & (vector >= 0)) or vector.sum() <= 0:
        raise UserError(
            "{class_priors} must be finite, not negative and not all 0", ("class_priors",)
        )
    return vector / vector.sum()


def _from_start(
    start: GaussianMixture, n_components: int | None, options: FitOptions, source: Source
) -> tuple[int, FitOptions, Source]:
    """K, options and source for EM from a saved model's parameters (its features by
    default), checked against them before any data are read."""
    given = (n_components or start.n_components, options.covariance_type)
    if given != (start.n_components, start.covariance_type):
        raise UserError(
            f"{{start}} has {start.n_components} {start.covariance_type} components; "
            "{n_components} and {covariance_type} must match it",
            ("start", "n_components", "covariance_type"),
        )
    if source.columns is None and start.feature_names:
        source = dataclasses.replace(source, columns=start.feature_names)
    if start.feature_names and source.columns != start.feature_names:
        raise UserError(
            f"{{start}} was fitted on {', '.join(start.feature_names)}; select the same columns",
            ("start",),
        )
    options = dataclasses.replace(
        options,
        weights_init=start.weights,
        means_init=start.means,
        precisions_init=start.precisions,
    )
    return start.n_components, options, source


def core_needs(
    options: FitOptions,
    n_components: int,
    workers: int,
    forked: bool = False,
    gaps: str = "refuse",
) -> Callable[[int, int], memory.Needs]:
    """What fits with ``options`` hold, for each number of features and of rows
    (memory.core): the k-means start's sample, hc's matrices, ``workers`` workers
    (processes of their own if ``forked``), and the layouts of blocks with gaps each
    keeps when ``gaps`` (the source's missing mode) is "marginal"."""
    starts = {options.init_for(restart) for restart in range(options.n_init)}
    hc_rows = options.hc_rows if "hc" in starts else 0
    sample = options.init_sample if starts & {"kmeans", "kmeans++"} else 0

    def needs(n_features: int, n_rows: int) -> memory.Needs:
        return memory.core(
            n_features,
            n_components,
            workers,
            min(hc_rows, n_rows),
            min(sample, n_rows),
            forked,
            n_rows if gaps == "marginal" else 0,
        )

    return needs


@one_blas_thread()
def select_k(
    source: Source,
    grid: Grid,
    options: FitOptions = SELECT_DEFAULTS,
    *,
    jobs: int = 1,
    report: Report = QUIET,
    name: Callable[[str], str] = str,
    table: GridTable | None = None,
    by_class: ClassChoice | None = None,
) -> tuple[list[selection.GridPoint], GaussianMixture | None]:
    """Every (K, covariance type) of ``grid`` fitted to ``source`` and ranked: the table
    and the winner (None if every point failed). ``by_class`` needs labels
    (select_by_class). ``jobs`` > 1 fits the points in that
    many processes. Each point's warnings are in its status, not raised; its failure is
    described with ``name`` for parameters (GMMError.describe). ``table`` keeps the grid
    as points finish, ranked at the end, and gives back the rows of an earlier run to
    resume (GridTable)."""
    if by_class is not None:
        by_class.need_labels()
    options, core = _grid_run(source, grid, options, jobs, table)
    with open_rows(source, report, core) as data, warnings.catch_warnings():
        warnings.simplefilter("ignore", GMMWarning)
        keys = _grid_keys(grid, data.rows.n_features)
        done = table.open(source, grid, options, report) if table is not None else {}
        done = _within_grid({None: done}, keys, table, report)[None]
        finished = list(done.values())

        def on_point(point: selection.GridPoint) -> None:
            finished.append(point.described(name))
            if table is not None:
                table.keep(finished)
            advance(finished[-1])

        with (
            _kept_when_stopped(table, finished, name),
            report.grid_progress(len(keys) - len(done), grid.criterion) as advance,
        ):
            points, winner = selection.select_rows(
                data.rows,
                grid,
                options,
                reducer=data.reducer if jobs == 1 else SERIAL,
                map_points=local.task_map(min(jobs, data.workers)),
                on_point=on_point,
                done=done,
            )
    points = [point.described(name) for point in points]
    if table is not None:
        table.save(points)
    if winner is not None:
        winner.feature_names = data.names
    return points, winner


def _grid_run(
    source: Source, grid: Grid, options: FitOptions, jobs: int, table: GridTable | None
) -> tuple[FitOptions, Callable[[int, int], memory.Needs]]:
    """What a select-k run checks before it reads (its features, one file, ``jobs``, the
    table against the source), its options (the seed drawn, to be recorded with a table)
    and what its fits hold (core_needs: ``jobs`` > 1 forks that many processes)."""
    source.refuse_predictions_as_features()
    require_one_file(source, dask_reads_many=False)
    local.check_jobs(jobs)
    workers = jobs if jobs > 1 else local.default_threads()
    core = core_needs(options, max(grid.k_values), workers, jobs > 1, source.missing)
    if table is not None:
        table.check(source)
        if options.seed is None:
            options = dataclasses.replace(options, seed=int(np.random.SeedSequence().entropy))
    return options, core


def _grid_keys(grid: Grid, n_features: int) -> list[tuple[int, str]]:
    """The grid's points by (K, covariance type), in the order they are fitted."""
    shared = selection.structures(grid.covariance_types, n_features)
    return [(k, structure) for structure in shared for k in grid.k_values]


def _within_grid(
    done: dict[object, dict],
    keys: list[tuple[int, str]],
    table: GridTable | None,
    report: Report,
) -> dict[object, dict]:
    """The points of an earlier run's table (by group: None, or class; then by key) that lie
    in this grid, in its order; a note says how many rows do not (left out of it)."""
    within = {
        group: {key: points[key] for key in keys if key in points} for group, points in done.items()
    }
    outside = sum(map(len, done.values())) - sum(map(len, within.values()))
    if outside:
        report.note(f"{outside} rows of '{table.path}' lie outside this grid: left out of it")
    return within


@contextlib.contextmanager
def _kept_when_stopped(table: GridTable | None, finished: list, name: Callable[[str], str]):
    """A stop (Ctrl-C, or a signal's Stopped) within says where the points ``finished``
    so far are kept, when ``table`` keeps them."""
    try:
        yield
    except KeyboardInterrupt as stop:
        if table is not None and finished and gridtable.read_back(table.path):
            stop.written = (
                f"; the grid points fitted so far are in '{table.path}', which "
                f"{name('resume')} goes on with"
            )
        raise


def _no_model(points: list[tuple[str, selection.GridPoint]], shared: bool) -> UserError:
    """Why select-k with labels has no model: no sound point (for a class, or with a
    shared structure at all), with the first point's reason."""
    unsound = next(label for label, _ in points if not any(p.best for c, p in points if c == label))
    first = next(point for label, point in points if label == unsound)
    whose = "" if shared else f" of class {unsound!r}"
    return UserError(
        f"no grid point{whose} is sound (every one failed or is degenerate; "
        f"K={first.n_components} {first.covariance_type}: {first.status})"
    )


@dataclass(frozen=True)
class ClassChoice:
    """How select-k with labels joins the classes' models: their ``priors`` by class name
    (None: the classes' shares of the weight), and whether every class ``shared`` one
    structure (mclust's EDDA)."""

    priors: Mapping[str, float] | None = None
    shared: bool = False

    def need_labels(self) -> None:
        """A UserError for a choice made without labels."""
        for name, given in (("class_priors", self.priors), ("shared_structure", self.shared)):
            if given:
                raise UserError(f"{{{name}}} needs {{labels}}", (name, "labels"))


@one_blas_thread()
def select_by_class(
    source: Source,
    grid: Grid,
    options: FitOptions = SELECT_DEFAULTS,
    *,
    jobs: int = 1,
    report: Report = QUIET,
    name: Callable[[str], str] = str,
    table: GridTable | None = None,
    by_class: ClassChoice | None = None,
) -> tuple[list[tuple[str, selection.GridPoint]], GaussianMixture]:
    """select-k with labels (``source.labels``, on every row): mclust's MclustDA, a grid
    for each class by BIC (core.discriminant), or with ``by_class.shared`` one structure
    for every class (EDDA); its points by class, and the model joined from the classes'
    winners (a UserError, the table saved, if a class has none). ``jobs`` and ``table``
    as for select_k() (the table with a class column)."""
    by_class = by_class or ClassChoice()
    discriminant.check_grid(grid)  # before the data are read
    options, core = _grid_run(source, grid, options, jobs, table)
    with open_rows(source, report, core) as data, warnings.catch_warnings():
        warnings.simplefilter("ignore", GMMWarning)
        priors = _priors(by_class.priors, data.class_names)  # checked before the table's
        keys = _grid_keys(grid, data.rows.n_features)
        done = table.open(source, grid, options, report, by_class) if table is not None else {}
        done = _within_grid(done, keys, table, report)
        finished = [(label, p) for label, points in done.items() for p in points.values()]
        runs = data.class_names[:1] if by_class.shared else data.class_names
        to_fit = sum(len(keys) - len(done.get(label, {})) for label in runs)

        def on_point(labels: tuple[str, ...], point: selection.GridPoint) -> None:
            point = point.described(name)
            finished.extend((label, point) for label in labels)
            if table is not None:
                table.keep([p for _, p in finished], [label for label, _ in finished])
            advance(point)

        in_jobs = local.task_map(min(jobs, data.workers))
        with (
            _kept_when_stopped(table, finished, name),
            report.grid_progress(to_fit, grid.criterion) as advance,
        ):
            if by_class.shared:
                points, model = discriminant.select_shared(
                    data.rows,
                    data.class_names,
                    grid,
                    options,
                    reducer=data.reducer if jobs == 1 else SERIAL,
                    class_priors=priors,
                    run=discriminant.PointsRun(in_jobs, on_point, done.get(data.class_names[0])),
                )
            else:
                points, model = discriminant.select_by_class(
                    data.rows,
                    data.class_names,
                    grid,
                    options,
                    reducer=data.reducer if jobs == 1 else SERIAL,
                    class_priors=priors,
                    run=discriminant.PointsRun(in_jobs, on_point, done),
                )
    points = [(label, point.described(name)) for label, point in points]
    if table is not None:
        table.save([point for _, point in points], [label for label, _ in points])
    if model is None:
        raise _no_model(points, by_class.shared)
    model.feature_names = data.names
    for mixture in model.classes.mixtures or ():
        mixture.feature_names = data.names
    return points, model


@one_blas_thread()
def classify(
    source: Source,
    model: GaussianMixture | str,
    output: Output,
    *,
    probabilities: bool = True,
    only_new_columns: bool = False,
    report: Report = QUIET,
) -> pa.Table | None:
    """Every row of ``source`` labelled by ``model`` (or the model file it names): the
    component, and p_k columns if ``probabilities``, after the input's columns unless
    ``only_new_columns``. Written to ``output``; without an output path, the labelled
    table is returned (refused for an input that may not fit in memory)."""
    _check_prediction_output("output", output, source, model)
    model = load_model(model)
    prediction = Classify(model, probabilities, only_new_columns)
    kept = None
    if output.path is None:
        _require_in_memory(source, prediction)
        prediction = kept = Kept(prediction)
    results = predict_rows(
        source,
        model,
        prediction,
        output,
        accept=lambda results: require_predicted(sum(results, Labelled()).n_samples, source),
        report=report,
    )
    if prediction.keeps_input:
        _note_replaced(sum(results, Labelled()).replaced, report)
    return None if kept is None else pa.concat_tables(kept.kept)


def _note_replaced(names: tuple[str, ...], report: Report) -> None:
    """A note of the input's columns that a prediction's output replaces."""
    if names:
        plural = "s" if len(names) > 1 else ""
        report.note(f"replacing the existing column{plural} {', '.join(names)}")


def _require_in_memory(source: Source, prediction: Classify | Impute) -> None:
    """For a table returned, not written: an input that fits in memory."""
    if not fits_in_memory(source, prediction.model, prediction.copies):
        raise UserError(
            f"{source.quoted} may not fit in memory (past memory_limit, read in chunks "
            "of chunk_rows, or CSV on stdin); give an output path, to which the rows are "
            "written chunk by chunk"
        )


@one_blas_thread()
def score(
    source: Source,
    model: GaussianMixture | str,
    per_sample: Output = NO_OUTPUT,
    *,
    report: Report = QUIET,
) -> dict[str, float]:
    """The log-likelihood, BIC and AIC of ``source`` under ``model`` (or the model file it
    names), with a per-row log_likelihood table written to ``per_sample`` if it has a
    path."""
    if per_sample.path == "-":
        raise InvalidParameter("per_sample", "-", "a file: stdout carries the summary JSON")
    _check_prediction_output("per_sample", per_sample, source, model)
    model = load_model(model)

    totals = {}

    def accept(results: list[Scores]) -> None:
        total = sum(results, Scores())
        require_predicted(total.n_samples, source)
        totals.update(zip(("weight", "log_likelihood"), total.sums.total(), strict=True))
        if totals["weight"] <= 0:
            raise tables.no_positive_weight(source.weight_column, source.name)
        totals["n_samples"], totals["n_partial"] = total.n_samples, total.n_partial
        totals["classes"], totals["replaced"] = total.classes, total.replaced

    prediction = Score(model, keeps_input=per_sample.path is not None)
    predict_rows(source, model, prediction, per_sample, accept=accept, report=report)
    if per_sample.path is not None:
        _note_replaced(totals["replaced"], report)
    weight, log_likelihood = float(totals["weight"]), float(totals["log_likelihood"])
    summary = {
        "n_samples": totals["n_samples"],
        "n_samples_missing_features": totals["n_partial"],
        "total_weight": weight,
        "log_likelihood": log_likelihood,
        "mean_log_likelihood": log_likelihood / weight,
        "bic": bic(log_likelihood, model.n_parameters, weight),
        "aic": aic(log_likelihood, model.n_parameters),
    }
    if source.labels is not None:
        summary.update(_class_scores(totals["classes"], model.classes.names, source, report))
    return summary


def _class_scores(classes, names: list[str], source: Source, report: Report) -> dict:
    """score's figures for labelled rows: error_rate, brier and confusion (label, then
    predicted class, to weight), the confusion also as a table on ``report``."""
    labelled, errors, brier = (float(v) for v in classes.sums.total())
    if labelled <= 0:
        raise UserError(f"no row of {source.name} scored has a label and a positive weight")
    counts = classes.confusion.tolist()
    report.confusion(list(names), counts)
    return {
        "error_rate": errors / labelled,
        "brier": brier / labelled,
        "confusion": {
            label: dict(zip(names, row, strict=True))
            for label, row in zip(names, counts, strict=True)
        },
    }


@one_blas_thread()
def impute(
    source: Source,
    model: GaussianMixture | str,
    output: Output,
    *,
    draws: int = 0,
    seed: int | None = 0,
    report: Report = QUIET,
) -> pa.Table | None:
    """Every row of ``source`` with its missing values in the model's features filled by
    their conditional means under ``model`` (or the model file it names), or, with
    ``draws`` > 0, that many copies of it in turn, drawn from the conditional mixture
    (multiple imputation; ``seed``, or fresh entropy for None) with a draw column.
    Source.missing is taken as marginal. Written to ``output``; without an output path,
    the table is returned (refused for an input that may not fit in memory)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
        report.note(f"drew seed {seed}")
    source = dataclasses.replace(source, missing="marginal")
    _check_prediction_output("output", output, source, model)
    model = load_model(model)
    prediction = Impute(model, draws, seed)
    text = source.engine == "local" and output.path is not None
    text = text and tables.format_for(output.path, output.format, for_output=True) != "parquet"
    kept = None
    if output.path is None:
        _require_in_memory(source, prediction)
        prediction = kept = Kept(prediction)

    def accept(results: list[Filled]) -> None:
        total = sum(results, Filled())
        require_predicted(total.n_samples, source)
        mixed = sorted(total.widened & total.unlike) if text else []
        if mixed:
            raise UserError(
                f"column '{mixed[0]}' of {source.name} was read in chunks, some with gaps to "
                "fill and some without, and its numbers would be written otherwise in each "
                "(1700000000000 as 1.7e+12 beside decimals); read the input whole (no "
                "{chunk_rows}, a larger {memory_limit}) or write Parquet",
                ("chunk_rows", "memory_limit"),
            )

    results = predict_rows(source, model, prediction, output, accept=accept, report=report)
    total = sum(results, Filled())
    _note_replaced(total.replaced, report)
    report.note(f"filled {total.n_cells} missing values")
    if total.n_empty:
        report.note(f"left {total.n_empty} row(s) with no feature observed empty")
    return None if kept is None else pa.concat_tables(kept.kept)


def _check_prediction_output(
    parameter: str, output: Output, source: Source, model: GaussianMixture | str
) -> None:
    """Before anything is read: ``output`` can be written (Output.check) and, locally, is
    neither the data nor the model file (a dask folder is checked against the input files
    once they are listed)."""
    require_one_file(source)
    output.check(source)
    if source.engine == "local":
        check_distinct({parameter: output.path}, files(source.data, model))


def require_predicted(n_predicted: int, source: Source) -> None:
    if n_predicted == 0:
        raise UserError(
            f"every row of {source.name} has a missing or infinite value in the "
            "model's columns; clean the data"
        )


def check_outputs(outputs: dict[str, str | None], inputs: Iterable[object] = ()) -> None:
    """Before anything is read: a file can be written at each output (keyed by its
    parameter; None and "-" pass), and none is an input or another output
    (check_distinct)."""
    for path in outputs.values():
        if path is not None and path != "-":
            check_output_path(path)
    check_distinct(outputs, files(*inputs))


def files(*given: object) -> list[str]:
    """The paths among ``given`` (inputs may be data or models in memory)."""
    return [os.fspath(item) for item in given if isinstance(item, str | os.PathLike)]


def write_model(model: GaussianMixture, output: str) -> None:
    """The model as JSON to a file (atomically) or to stdout ("-")."""
    if output == "-":
        sys.stdout.write(modelfile.dumps(model))
        sys.stdout.flush()
    else:
        modelfile.save(model, output)


def write_summary(summary: dict[str, float], output: str) -> None:
    """score's summary as one line of JSON to a file (atomically) or to stdout ("-")."""
    text = json.dumps(summary, sort_keys=True) + "\n"
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        tables.atomic_write_bytes(output, text.encode())


GENERATE_CHUNK_ROWS = 131072  # also the Parquet row-group size


@dataclass(frozen=True)
class Draw:
    """What generate draws: rows from a random mixture of ``n_components`` components in
    ``n_features`` dimensions (means ``separation`` standard deviations apart), or from
    ``model`` (or the model file it names); with a true_component column (and for a model
    of classes the component's class in true_label) unless ``labels`` is False, and
    integer frequency weights in ``weight_column`` if given."""

    n_samples: int = 1000
    n_components: int = 3
    n_features: int = 2
    covariance_type: str = "full"
    separation: float = 3.0
    model: GaussianMixture | str | None = None
    labels: bool = True
    weight_column: str | None = None

    def __post_init__(self) -> None:
        check(self, DRAW_RULES)
        data_columns = (
            *("true_component", "true_label"),
            *(f"x{i}" for i in range(self.n_features)),
        )
        if self.weight_column in data_columns:
            raise InvalidParameter(
                "weight_column", self.weight_column, "a name other than a data column's"
            )


DRAW_RULES = {
    "n_samples": whole_number(1),
    "n_components": whole_number(1),
    "n_features": whole_number(1),
    "covariance_type": COVARIANCE,
    "separation": Rule(lambda v: 0 < v < 1e6, "a positive number below 1e6"),
}


def generate(
    draw: Draw, seed: int | None, output: Output, truth: str | None = None
) -> GaussianMixture:
    """Rows drawn as ``draw`` says, written to ``output`` chunk by chunk (bounded memory
    for any number), the mixture saved to ``truth`` if given; the mixture."""
    check_outputs({"output": output.path, "truth": truth}, [draw.model])
    output.check_file()
    mixture_seed, sample_seed, weight_seed = np.random.SeedSequence(seed).spawn(3)
    mixture = (
        load_model(draw.model)
        if draw.model is not None
        else random_mixture(
            draw.n_components,
            draw.n_features,
            covariance_type=draw.covariance_type,
            separation=draw.separation,
            rng=np.random.default_rng(mixture_seed),
        )
    )
    names = mixture.feature_names or [f"x{i}" for i in range(mixture.n_features)]
    mixture.feature_names = names
    sample_rng, weight_rng = np.random.default_rng(sample_seed), np.random.default_rng(weight_seed)
    with replaced_together(), tables.TableWriter(output.path, output.table_format) as writer:
        for start in range(0, draw.n_samples, GENERATE_CHUNK_ROWS):
            rows = min(GENERATE_CHUNK_ROWS, draw.n_samples - start)
            X, labels = mixture.sample(rows, sample_rng)
            columns = {name: X[:, i] for i, name in enumerate(names)}
            if draw.labels:
                columns["true_component"] = labels
                if mixture.classes is not None:
                    columns["true_label"] = _class_names(mixture.classes, labels)
            if draw.weight_column:
                columns[draw.weight_column] = weight_rng.integers(1, 6, rows)
            writer.write(pa.table(columns))
        if truth is not None:
            modelfile.save(mixture, truth)
    return mixture


def _class_names(classes, components: np.ndarray) -> pa.Array:
    """Each drawn component's class name (null for a component of no class)."""
    return pa.array([classes.class_of(k) for k in components], pa.string())


def load_model(model: GaussianMixture | str | os.PathLike) -> GaussianMixture:
    """The model itself, or the model file it names (a one-line error names a bad one)."""
    return model if isinstance(model, GaussianMixture) else modelfile.load(os.fspath(model))


@dataclass(frozen=True)
class Picture:
    """What plot draws: ``data`` (with ``model`` over it) or a select-k ``grid`` table,
    into the image ``output`` (.png, .svg, .pdf) of ``size`` inches ("8x6") at ``dpi``;
    ``columns``: two features to draw; ``exclude``: columns left out of the default
    features; ``color_by``: a label column that colours the data alone (no feature); at
    most ``max_points`` rows, a subsample drawn with ``seed``."""

    output: str
    size: str = "8x6"
    dpi: int = 150
    data: str | None = None
    model: str | None = None
    grid: str | None = None
    columns: list[str] | None = None
    max_points: int = 20000
    seed: int | None = 0
    exclude: list[str] = dataclasses.field(default_factory=list)
    color_by: str | None = None
    missing: str = "drop"  # rows with missing values: Source.missing (marginal: with --model)


def plot(picture: Picture, report: Report = QUIET):
    """Draw a fit over its data, the data alone, or a select-k grid (the plot extra);
    the image written (gmmcli.plot.Image)."""
    from gmmcli import plot as pictures  # matplotlib only loads when a picture is drawn

    image = pictures.Image.from_options(picture.output, picture.size, picture.dpi)
    data, model, grid, columns = picture.data, picture.model, picture.grid, picture.columns
    check_distinct({"output": picture.output}, files(data, model, grid))
    if data is None and grid is None:
        raise UserError("give a DATA file to draw (--model for a fit), or --table with a grid")
    if data is not None and grid is not None:
        raise UserError("give a DATA file or --table, not both: a picture shows one of them")
    if grid is not None and (model, columns, picture.color_by, *picture.exclude) != (None,) * 3:
        raise UserError(
            "--table draws the select-k grid alone; leave out --model, --columns, --exclude "
            "and --color-by"
        )
    if model is not None and picture.color_by is not None:
        raise UserError(
            "--color-by colours the data alone; leave out --model, whose picture colours "
            "the rows by their components"
        )
    pictures.require_matplotlib()
    if grid is not None:
        source = "stdin" if grid == "-" else grid
        columns = tables.read_table(grid, text="class").to_pydict()  # classes as written
        figure = pictures.grid_figure(columns, image, source=source)
        pictures.save(figure, image)
        return image
    pictures.check_columns(columns)
    mixture = load_model(model) if model is not None else None
    if mixture is not None and not mixture.feature_names:
        raise UserError("the model has no feature names; refit it with gmmcli fit")
    label = picture.color_by
    exclude = [*picture.exclude, *([label] if label else [])]
    source = Source(data, columns=mixture.feature_names if mixture else columns, exclude=exclude)
    require_one_file(source, dask_reads_many=False)
    frame = tables.read_table(source.path)
    if label is not None and label not in frame.column_names:
        raise UserError(
            f"--color-by names '{label}', which is not a column of {source.quoted}; "
            f"available columns: {tables.listing(frame)}"
        )
    features = select(frame, source, report)
    report.features(features.names, None, f"{len(features.X)} rows")
    placeable = mixture is not None or picture.missing != "marginal"  # (a model places gaps)
    features, _ = tables.require_complete(
        features,
        source=source.name,
        missing=picture.missing if placeable else "drop",
        keep_rows=True,
    )
    keep = ~features.missing
    if not keep.any():
        raise UserError(
            f"every row of {source.name} has a missing feature value; "
            "clean the data or choose other columns"
        )
    if not keep.all():
        report.note(f"left out {int((~keep).sum())} row(s) with missing values")
    X = features.X[keep]
    placed = X if not has_gaps(X) else mixture.impute(X)  # rows with gaps: conditional means
    view = pictures.choose_view(placed, features.names, columns)
    shown = pictures.subsample(len(X), picture.max_points, picture.seed)
    if mixture is not None:
        figure = pictures.fit_figure(X, shown, view, mixture, image, placed)
    else:
        label = label or next((n for n in pictures.LABEL_COLUMNS if n in frame.column_names), None)
        labels = None
        if label is not None:
            values = frame.column(frame.column_names.index(label)).to_pylist()
            labels = (label, [v for v, kept in zip(values, keep, strict=True) if kept])
        figure = pictures.data_figure(X, shown, view, image, source=source.name, labels=labels)
    pictures.save(figure, image)
    return image
