"""The `gmmcli` command: declares commands and options, builds typed requests, calls the
jobs (gmmcli.jobs), prints their summaries.

stdout carries data only; everything a person reads goes to stderr (gmmcli.console).
Exit codes: 0 success, 1 internal error, 2 user error, 3 failed --strict, 128 + N stopped
by signal N (130 Ctrl-C, 129 SIGHUP, 143 SIGTERM).
"""

from __future__ import annotations

import gmmcli.threads  # noqa: F401 (first: sets BLAS threads before numpy loads)

# isort: split
import sys
from enum import Enum
from typing import Annotated

import typer

from gmmcli import __version__, jobs
from gmmcli.commands import app, command, strict_failure
from gmmcli.console import Reporter
from gmmcli.core.init import HC_ROWS, INIT_SAMPLE
from gmmcli.core.options import FitOptions, Grid
from gmmcli.errors import UserError
from gmmcli.flags import (
    COVARIANCE_HELP,
    INPUT,
    MODEL,
    OUTPUT,
    ChunkRowsOpt,
    ClassGridsOpt,
    ClassPriorsOpt,
    ColumnsOpt,
    Criterion,
    DataArg,
    Dtype,
    DtypeOpt,
    Engine,
    EngineOpt,
    ExcludeOpt,
    FitStrictOpt,
    FormatOpt,
    HcRowsOpt,
    InitMethod,
    InitOpt,
    InitSampleOpt,
    JobsOpt,
    LabelOpt,
    MaxIterOpt,
    MemoryLimitOpt,
    Missing,
    MissingOpt,
    ModelOpt,
    OutputFormatOpt,
    OutputOpt,
    QuietOpt,
    RegCovarOpt,
    SchedulerOpt,
    ScoredLabelOpt,
    SeedOpt,
    SharedStructureOpt,
    WeightOpt,
    grid_flag,
    option,
)
from gmmcli.inputs import Output, Source
from gmmcli.stopping import exit_without_collecting, handle_signals, interrupted


def parse_seed(text: str) -> int | None:
    """--seed: an integer, or 'random' for fresh entropy (recorded in the model)."""
    if text == "random":
        return None
    if not text.isdigit():
        raise UserError(f"--seed must be a non-negative integer or 'random', got {text!r}")
    return int(text)


def table_source(
    data: str,
    fmt: Enum | None,
    columns: str | None,
    exclude: str | None,
    weight_column: str | None,
    missing: Enum,
    chunk_rows: int | None,
    memory_limit: str | None,
) -> Source:
    """The input of fit and select-k as their shared options describe it."""
    return Source(
        data,
        value(fmt),
        jobs.parse_column_list(columns),
        jobs.parse_column_list(exclude) or (),
        weight_column,
        value(missing),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
    )


def value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


def _version(given: bool) -> None:
    if given:
        typer.echo(f"gmmcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Gaussian mixture models fitted by EM: generate, fit, select-k, classify, score, impute,
    plot."""


@command(example="gmmcli generate -k 3 -d 2 -n 1000 --seed 1 -o data.csv")
def generate(
    n_components: Annotated[int, option("-k", panel=MODEL, help="Number of components.")] = 3,
    n_features: Annotated[int, option("-d", panel=MODEL, help="Number of features.")] = 2,
    n_samples: Annotated[int, option("-n", panel=OUTPUT, help="Number of rows.")] = 1000,
    seed: SeedOpt = "0",
    covariance_type: Annotated[
        str, option("--covariance-type", panel=MODEL, help=COVARIANCE_HELP)
    ] = "full",
    separation: Annotated[
        float, option(panel=MODEL, help="Spread of the means, in standard deviations.")
    ] = 3.0,
    weight_column: Annotated[
        str | None,
        option(
            "--weight-column", panel=OUTPUT, help="Add integer frequency weights in this column."
        ),
    ] = None,
    truth: Annotated[
        str | None, option(panel=OUTPUT, help="Also save the true mixture as a model JSON.")
    ] = None,
    model: Annotated[
        str | None, option("--model", "-m", panel=MODEL, help="Sample from this model instead.")
    ] = None,
    no_labels: Annotated[
        bool, option("--no-labels", panel=OUTPUT, help="Leave out the true_component column.")
    ] = False,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Draw rows from a random mixture (or from a saved model)."""
    draw = jobs.Draw(
        n_samples,
        n_components,
        n_features,
        covariance_type,
        separation,
        model,
        labels=not no_labels,
        weight_column=weight_column,
    )
    mixture = jobs.generate(draw, parse_seed(seed), Output(output, value(output_format)), truth)
    Reporter(quiet).note(
        f"drew {n_samples} rows from {mixture.n_components} {mixture.covariance_type} "
        f"components in {mixture.n_features} dimensions"
    )


@command(example="gmmcli fit data.csv -k 3 -o model.json", name="fit")
def fit_command(
    data: DataArg,
    n_components: Annotated[
        int | None,
        option("-k", panel=MODEL, help="Number of components (default: --init-model's)."),
    ] = None,
    covariance_type: Annotated[
        str | None,
        option("--covariance-type", panel=MODEL, help=f"{COVARIANCE_HELP} \\[default: full]"),
    ] = None,
    init: InitOpt = InitMethod["kmeans"],
    init_sample: InitSampleOpt = INIT_SAMPLE,
    hc_rows: HcRowsOpt = HC_ROWS,
    init_model: Annotated[
        str | None, option(panel=MODEL, help="Start EM from this model's parameters.")
    ] = None,
    n_init: Annotated[int, option(panel=MODEL, help="Restarts; the best sound one wins.")] = 1,
    max_iter: MaxIterOpt = 100,
    tol: Annotated[
        float, option(panel=MODEL, help="Stop when the mean log-likelihood gains less.")
    ] = 1e-3,
    reg_covar: RegCovarOpt = 1e-6,
    seed: SeedOpt = "0",
    dtype: DtypeOpt = Dtype["float64"],
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine["local"],
    scheduler: SchedulerOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weight_column: WeightOpt = None,
    label_column: LabelOpt = None,
    class_priors: ClassPriorsOpt = None,
    missing: MissingOpt = Missing["refuse"],
    strict: FitStrictOpt = False,
    output: OutputOpt = "-",
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit a Gaussian mixture by EM and save it as JSON.

    DATA - (stdin) is first copied to a temporary file: EM reads its rows once per
    iteration.
    """
    report = Reporter(quiet)
    start = jobs.load_model(init_model) if init_model else None
    given_type = covariance_type or (start.covariance_type if start else "full")
    options = FitOptions(
        covariance_type=given_type,
        init=value(init),
        init_sample=init_sample,
        hc_rows=hc_rows,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=parse_seed(seed),
        dtype=value(dtype),
        canonical_order=True,
    )
    source = table_source(
        data, fmt, columns, exclude, weight_column, missing, chunk_rows, memory_limit
    )
    source = source.with_labels(label_column).on(value(engine), scheduler)
    jobs.check_outputs({"output": output}, [data, init_model])
    priors = jobs.parse_class_priors(class_priors)
    with report.captured_warnings():
        model = jobs.fit(
            source, n_components, options, start=start, report=report, class_priors=priors
        )
    info = model.fit_info
    if strict and not (info.converged and not info.degenerate):
        raise strict_failure("the fit did not converge or is degenerate")
    jobs.write_model(model, output)
    report.summary(model)


@command(
    example="gmmcli select-k data.csv --k-max 8 --table grid.csv -o best.json",
    name="select-k",
)
def select_k(
    data: DataArg,
    k_min: Annotated[int, option(panel=MODEL, help="Smallest K tried.")] = 1,
    k_max: Annotated[int, option(panel=MODEL, help="Largest K tried.")] = 10,
    covariance_types: Annotated[
        str,
        option(
            panel=MODEL,
            help="Comma list of covariance structures to try, by scikit-learn's or mclust's "
            "names (see --covariance-type of fit), all for the fourteen or sklearn for "
            "scikit-learn's four.",
        ),
    ] = "all",
    criterion: Annotated[
        Criterion,
        option(panel=MODEL, help="What picks the winner (cv: held-out log-likelihood)."),
    ] = Criterion["bic"],
    cv_folds: Annotated[
        int | None,
        option(panel=MODEL, help="Cross-validation folds (default 5 with --criterion cv)."),
    ] = None,
    n_init: Annotated[int, option(panel=MODEL, help="Restarts per grid point.")] = 3,
    init: InitOpt = InitMethod["auto"],
    init_sample: InitSampleOpt = INIT_SAMPLE,
    hc_rows: HcRowsOpt = HC_ROWS,
    max_iter: Annotated[int, option(panel=MODEL, help="EM iterations at most per fit.")] = 1000,
    tol: Annotated[
        float,
        option(panel=MODEL, help="Convergence tolerance (tight, so criteria compare fairly)."),
    ] = 1e-6,
    reg_covar: RegCovarOpt = 1e-6,
    seed: SeedOpt = "0",
    dtype: DtypeOpt = Dtype["float64"],
    n_jobs: JobsOpt = 1,
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weight_column: WeightOpt = None,
    missing: MissingOpt = Missing["refuse"],
    strict: Annotated[
        bool,
        option("--strict", panel=OUTPUT, help="If the winner did not converge: exit 3, no model."),
    ] = False,
    output: OutputOpt = "-",
    table: Annotated[
        str | None,
        option(
            panel=OUTPUT,
            help="Write the grid here as points finish (.csv, .csv.gz, .tsv, .parquet).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        option("--resume", panel=OUTPUT, help="Reuse the rows of --table made alike (README)."),
    ] = False,
    label_column: ClassGridsOpt = None,
    shared_structure: SharedStructureOpt = False,
    class_priors: ClassPriorsOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Choose K and the covariance structure by BIC, AIC, ICL or cross-validation.

    BIC = -2 log L + p log n and AIC = -2 log L + 2p, lower is better (scikit-learn's sign;
    mclust reports 2 log L - p log n, higher is better: mclust's BIC is minus ours).
    ICL = BIC - 2 Σ w log max_k p(k|x) (mclust's definition), lower is better. cv is the
    held-out mean log-likelihood, higher is better. n is the total weight. Degenerate or
    failed grid points are listed with the reason and never win.
    """
    report = Reporter(quiet)
    if not 1 <= k_min <= k_max:
        raise UserError(f"need 1 <= --k-min <= --k-max, got {k_min} and {k_max}")
    grid = Grid(
        range(k_min, k_max + 1),
        jobs.parse_column_list(covariance_types, item="covariance type"),
        value(criterion),
        cv_folds,
    )
    options = FitOptions(
        init=value(init),
        n_init=n_init,
        init_sample=init_sample,
        hc_rows=hc_rows,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=parse_seed(seed),
        dtype=value(dtype),
    )
    source = table_source(
        data, fmt, columns, exclude, weight_column, missing, chunk_rows, memory_limit
    ).with_labels(label_column)
    jobs.check_outputs({"output": output, "table": table}, [data])
    kept = jobs.GridTable.given(table, resume, source, output)
    by_class = jobs.ClassChoice(jobs.parse_class_priors(class_priors), shared_structure)
    labelled = label_column is not None
    select = jobs.select_by_class if labelled else jobs.select_k
    with report.captured_warnings():
        points, winner = select(
            source, grid, options, jobs=n_jobs, report=report, name=grid_flag, table=kept,
            by_class=by_class,
        )  # fmt: skip
    if labelled:
        report.class_grids(points, grid, winner)
    else:
        report.grid(points, grid)
    if winner is None:  # (with labels a UserError says which class has none)
        raise UserError(f"every grid point failed, the data support no model ({points[0].status})")
    if strict and not winner.fit_info.converged:
        raise strict_failure("the winning fit did not converge", "no model written")
    jobs.write_model(winner, output)


@command(example="gmmcli classify data.csv --model model.json -o labelled.csv")
def classify(
    data: DataArg,
    model: ModelOpt,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    no_probabilities: Annotated[
        bool, option("--no-probabilities", panel=OUTPUT, help="Write only the component column.")
    ] = False,
    only_new_columns: Annotated[
        bool, option("--only-new-columns", panel=OUTPUT, help="Leave the input columns out.")
    ] = False,
    missing: MissingOpt = Missing["refuse"],
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine["local"],
    scheduler: SchedulerOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Label every row with its most probable component and membership probabilities.

    The features are the model's, taken from DATA by their names wherever they stand.

    Large files (past --memory-limit) and CSV on stdin are read and written chunk by chunk.
    With --engine dask, -o is a folder: one Parquet file per partition.
    """
    source = Source(
        data,
        value(fmt),
        missing=value(missing),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=value(engine),
        scheduler=scheduler,
    )
    jobs.classify(
        source,
        model,
        Output(output, value(output_format)),
        probabilities=not no_probabilities,
        only_new_columns=only_new_columns,
        report=Reporter(quiet),
    )


@command(example="gmmcli score data.csv --model model.json --per-sample scores.csv")
def score(
    data: DataArg,
    model: ModelOpt,
    weight_column: WeightOpt = None,
    label_column: ScoredLabelOpt = None,
    per_sample: Annotated[
        str | None, option(panel=OUTPUT, help="Also write every row with its log_likelihood.")
    ] = None,
    output: OutputOpt = "-",
    missing: MissingOpt = Missing["refuse"],
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine["local"],
    scheduler: SchedulerOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the log-likelihood, BIC and AIC of data under a model, as JSON (stdout or -o).

    The features are the model's, taken from DATA by their names wherever they stand.

    Large files (past --memory-limit) and CSV on stdin are read chunk by chunk.
    With --engine dask, --per-sample is a folder: one Parquet file per partition.
    """
    source = Source(
        data,
        value(fmt),
        weights=weight_column,
        missing=value(missing),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=value(engine),
        scheduler=scheduler,
        labels=label_column,
    )
    jobs.check_outputs({"output": output}, [data, model])
    if per_sample != "-":  # (the job refuses "-"; with dask, --per-sample is a folder)
        jobs.check_distinct({"output": output, "per_sample": per_sample})
    with jobs.replaced_together():
        summary = jobs.score(source, model, Output(per_sample), report=Reporter(quiet))
        jobs.write_summary(summary, output)


@command(example="gmmcli impute data.csv --model model.json -o filled.csv")
def impute(
    data: DataArg,
    model: ModelOpt,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    draws: Annotated[
        int,
        option(
            panel=OUTPUT,
            help="Write this many copies of each row, its gaps drawn from the conditional "
            "mixture (multiple imputation), with a draw column; 0: the conditional means.",
            min=0,
        ),
    ] = 0,
    seed: SeedOpt = "0",
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine["local"],
    scheduler: SchedulerOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fill every missing value (empty, null, NaN) of the model's features in DATA.

    Each gap gets its conditional mean under the mixture, Σₖ p(k | observed) E[missing |
    observed, k]; other cells and columns are written as they are. A row with no feature
    observed is left empty. With --draws N: N copies of every row, gaps drawn at random.

    Large files (past --memory-limit) and CSV on stdin are read and written chunk by chunk.
    With --engine dask, -o is a folder: one Parquet file per partition.
    """
    source = Source(
        data,
        value(fmt),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=value(engine),
        scheduler=scheduler,
    )
    jobs.impute(
        source,
        model,
        Output(output, value(output_format)),
        draws=draws,
        seed=parse_seed(seed),
        report=Reporter(quiet),
    )


@command(example="gmmcli plot data.csv --model model.json -o fit.png")
def plot(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Data file (.csv, .tsv, .csv.gz, ..., .parquet) or - for stdin; not with --table."
        ),
    ] = None,
    model: Annotated[
        str | None,
        option(
            "--model",
            "-m",
            panel=MODEL,
            help="Draw this model (JSON from gmmcli fit) over the data.",
        ),
    ] = None,
    table: Annotated[
        str | None,
        option(
            panel=INPUT, help="Draw this select-k grid (from select-k --table) instead of data."
        ),
    ] = None,
    output: Annotated[
        str, option("--output", "-o", panel=OUTPUT, help="Image file: .png, .svg or .pdf.")
    ] = ...,
    columns: Annotated[
        str | None,
        option(panel=INPUT, help="Two features to draw, x,y (default: principal axes when D > 2)."),
    ] = None,
    exclude: ExcludeOpt = None,
    color_by: Annotated[
        str | None,
        option(panel=INPUT, help="Colour the data alone by this label column (no feature)."),
    ] = None,
    max_points: Annotated[
        int,
        option(
            panel=OUTPUT, help="Draw at most this many rows, a random subsample (--seed).", min=1
        ),
    ] = 20000,
    seed: SeedOpt = "0",
    size: Annotated[str, option(panel=OUTPUT, help="Figure size in inches, WIDTHxHEIGHT.")] = "8x6",
    dpi: Annotated[
        int, option(panel=OUTPUT, help="Dots per inch: a PNG is size × dpi pixels.")
    ] = 150,
    missing: MissingOpt = Missing["drop"],
    quiet: QuietOpt = False,
) -> None:
    r"""Draw a fit over its data, the data alone, or a select-k grid, as PNG, SVG or PDF.

    With --model: rows coloured by most probable component, means, contours at distance 1, 2.

    More than two features: the first two principal axes of the data, or two --columns.

    Without --model: the rows alone, coloured by --color-by (or component, true_component).

    Rows with a missing value are left out; with --model and --missing marginal, drawn
    hollow at their conditional means, coloured by what they have.

    With --table: the criterion against K, a line per structure; by class, a panel per class.

    Needs the plot extra: pip install 'gmmcli\[plot]'
    """
    report = Reporter(quiet)
    picture = jobs.Picture(
        output,
        size,
        dpi,
        data,
        model,
        table,
        jobs.parse_column_list(columns),
        max_points,
        parse_seed(seed),
        jobs.parse_column_list(exclude) or [],
        color_by,
        value(missing),
    )
    image = jobs.plot(picture, report)
    report.note(f"drew {output} ({image.width:g}x{image.height:g} in at {image.dpi} dpi)")


def main() -> None:
    """Console-script entry point (SIGTERM and SIGHUP stop a run as Ctrl-C does)."""
    handle_signals()
    exit_without_collecting()
    try:
        app()
    except KeyboardInterrupt as err:
        sys.exit(interrupted(err, detail=""))
