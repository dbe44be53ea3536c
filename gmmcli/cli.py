"""The `gmmcli` command: a thin Typer layer over gmmcli.io and gmmcli.core.

stdout carries data only; everything a person reads goes to stderr through rich.
Exit codes: 0 success, 1 internal error, 2 user error, 3 failed --strict, 130 interrupted.
"""

from __future__ import annotations

import gmmcli.threads  # noqa: F401 (first: sets BLAS threads before numpy loads)

# isort: split
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

import numpy as np
import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gmmcli import __version__, outputs
from gmmcli.core import GaussianMixture, fit
from gmmcli.core import select as selection
from gmmcli.core.covariance import get_covariance
from gmmcli.core.em import InMemoryRows, RowSource, block_rows_for
from gmmcli.core.fit import fit_rows
from gmmcli.core.generate import random_mixture
from gmmcli.core.init import INIT_SAMPLE
from gmmcli.core.model import aic, bic
from gmmcli.engines import stream
from gmmcli.errors import GMMError, GMMWarning, UserError
from gmmcli.io import modelfile, tables
from gmmcli.io.atomic import check_output_folder, check_output_path

EXIT_USER_ERROR = 2
EXIT_STRICT = 3
EXIT_INTERRUPTED = 130
LOG_WIDTH = 160
GENERATE_CHUNK_ROWS = 131072  # also the Parquet row-group size

app = typer.Typer(
    name="gmmcli",
    help="Gaussian mixture models fitted by EM: generate, fit, classify and score tables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class CovarianceType(str, Enum):
    full = "full"
    tied = "tied"
    diag = "diag"
    spherical = "spherical"


class InitMethod(str, Enum):
    kmeans = "kmeans"
    kmeanspp = "kmeans++"
    random = "random"
    random_from_data = "random-from-data"


class Criterion(str, Enum):
    bic = "bic"
    aic = "aic"
    icl = "icl"
    cv = "cv"


class Dtype(str, Enum):
    float64 = "float64"
    float32 = "float32"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class Format(str, Enum):
    csv = "csv"
    tsv = "tsv"
    parquet = "parquet"


# Options shared by several commands, named alike everywhere.
DataArg = Annotated[
    str, typer.Argument(help="Data file (.csv, .tsv, .parquet/.pq) or - for stdin.")
]
FormatOpt = Annotated[
    Format | None, typer.Option("--format", help="Input format; overrides the extension.")
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Output path; - for stdout.")]
OutputFormatOpt = Annotated[
    Format | None,
    typer.Option("--output-format", help="Output table format; overrides the extension."),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(help="Comma list of feature columns (default: every numeric column)."),
]
ExcludeOpt = Annotated[str | None, typer.Option(help="Comma list of columns to leave out.")]
WeightOpt = Annotated[
    str | None,
    typer.Option("--weight-column", help="Column of frequency weights (counts per row)."),
]
DropMissingOpt = Annotated[
    bool,
    typer.Option(
        "--drop-missing", help="Skip rows with a missing or infinite feature instead of failing."
    ),
]
SeedOpt = Annotated[
    str, typer.Option(help="Random seed: an integer, or 'random' for fresh entropy.")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")
]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model JSON written by gmmcli fit.")]
RegCovarOpt = Annotated[
    float, typer.Option(help="Added to every covariance diagonal (absolute, as scikit-learn).")
]
DtypeOpt = Annotated[
    Dtype,
    typer.Option(
        help="Precision of the E-step (float32: faster; statistics still summed in float64)."
    ),
]
ChunkRowsOpt = Annotated[
    int | None,
    typer.Option(
        help="Rows per chunk when a file is streamed (default 200,000; CSV chunks are cut by "
        "an estimate of bytes), and per block of work in memory (default from D and K).",
        min=1,
    ),
]
MemoryLimitOpt = Annotated[
    str | None,
    typer.Option(
        help="Stream the file in chunks when reading it whole would need more than this "
        "(e.g. 2GB; default: half the memory available at start)."
    ),
]
EngineOpt = Annotated[
    Engine,
    typer.Option(
        help="Where rows are processed: here (local), or on a Dask cluster (dask: DATA is a "
        "Parquet file, a folder of them or a quoted glob; needs the dask extra)."
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        help="With --engine dask: a scheduler ADDRESS (e.g. tcp://10.0.0.5:8786), or "
        "local[:N] to start N worker processes here for this run \\[default: local]."
    ),
]
InitSampleOpt = Annotated[
    int,
    typer.Option(
        help="k-means++ seeds on a seeded weighted sample of about this many rows when there "
        "are more (one pass; Lloyd then uses every row); 0 seeds on every row.",
        min=0,
    ),
]
CovarianceOpt = Annotated[
    CovarianceType, typer.Option("--covariance-type", help="Covariance structure.")
]


class Reporter:
    """Everything a person reads: on stderr, silenced by --quiet (except errors)."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True, quiet=quiet)
        if not self.console.is_terminal:
            self.console.width = LOG_WIDTH  # logs: keep table rows whole
        self.quiet = quiet

    def features(self, names: list[str], weight_column: str | None, detail: str = "") -> None:
        """The line naming the features a command uses: 'features: a, b (detail, weights
        from 'w')'."""
        details = [detail] if detail else []
        if weight_column:
            details.append(f"weights from '{weight_column}'")
        extra = f" ({', '.join(details)})" if details else ""
        self.note(f"features: {', '.join(names)}{extra}")

    def note(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def captured_warnings(self):
        """Show gmmcli's warnings as one line each instead of Python's format."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GMMWarning)
            yield
        for item in caught:
            if issubclass(item.category, GMMWarning):
                self.warn(str(item.message))
            else:
                warnings.showwarning(
                    item.message, item.category, item.filename, item.lineno, item.file
                )

    @contextlib.contextmanager
    def progress(self, total: int, label: str):
        """A transient bar, only when stderr is a terminal; yields an update callback."""
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            disable=self.quiet or not self.console.is_terminal,
        )
        with bar:
            task = bar.add_task(label, total=total)
            yield lambda advance, text: bar.update(task, advance=advance, description=text)


def _fail(message: str, code: int) -> typer.Exit:
    """Print one error line (the message taken literally, not as markup); the exit to raise."""
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def command(*, example: str, **kwargs):
    """Register a subcommand whose help ends with an example and whose errors map to exits."""

    def register(func):
        @functools.wraps(func)
        def run(*args, **kw):
            try:
                return func(*args, **kw)
            except GMMError as err:
                raise _fail(str(err), EXIT_USER_ERROR) from None
            except KeyboardInterrupt:
                raise _fail("interrupted; nothing was written", EXIT_INTERRUPTED) from None
            except BrokenPipeError:
                # The reader went away (| head): stop quietly, with stdout sent nowhere.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None

        return app.command(epilog=f"Example: {example}", **kwargs)(run)

    return register


def check_outputs(*paths: str | None, tables_at: tuple[str | None, ...] = ()) -> None:
    """Check every output before anything is written: folders exist, table formats known."""
    for path in (*paths, *tables_at):
        if path is not None and path != "-":
            check_output_path(path)
    for path in tables_at:
        if path is not None and path != "-":
            tables.format_for(path, None, for_output=True)


def parse_seed(text: str) -> int | None:
    """--seed: an integer, or 'random' for fresh entropy (recorded in the model)."""
    if text == "random":
        return None
    if not text.isdigit():
        raise UserError(f"--seed must be a non-negative integer or 'random', got {text!r}")
    return int(text)


def read_features(
    data: str,
    fmt: Format | None,
    *,
    columns: list[str] | None,
    exclude: str | None = None,
    weight_column: str | None = None,
    report: Reporter,
    name: str | None = None,
) -> tuple[pa.Table, tables.Features]:
    """Read a table and pick its feature columns (and weights), saying which on stderr."""
    table = tables.read_table(data, fmt.value if fmt else None)
    features = tables.select_features(
        table,
        columns=columns,
        exclude=tables.parse_column_list(exclude) or [],
        weight_column=weight_column,
        source=name or _source_name(data),
    )
    note_features(features, report)
    return table, features


def note_features(features: tables.Features, report: Reporter) -> None:
    """Which features (and weights) a command read, and how many rows, on stderr."""
    report.features(features.names, features.weight_column, f"{len(features.X)} rows")


def _source_name(data: str) -> str:
    return "stdin" if data == "-" else data


def write_output(table: pa.Table, output: str, fmt: Format | None) -> None:
    """A table to a path (format by extension or --output-format) or to stdout as CSV."""
    if output == "-":
        tables.write_table(table, "-", fmt.value if fmt else "csv")
    else:
        tables.write_table(
            table, output, tables.format_for(output, fmt and fmt.value, for_output=True)
        )


def write_model(model: GaussianMixture, output: str) -> None:
    if output == "-":
        sys.stdout.write(modelfile.dumps(model))
        sys.stdout.flush()
    else:
        modelfile.save(model, output)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gmmcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Gaussian mixture models fitted by EM: generate, fit, classify and score tables."""


@command(example="gmmcli generate -k 3 -d 2 -n 1000 --seed 1 -o data.csv")
def generate(
    n_components: Annotated[int, typer.Option("-k", help="Number of components.")] = 3,
    n_features: Annotated[int, typer.Option("-d", help="Number of features.")] = 2,
    n_samples: Annotated[int, typer.Option("-n", help="Number of rows.")] = 1000,
    seed: SeedOpt = "0",
    covariance_type: CovarianceOpt = CovarianceType.full,
    separation: Annotated[
        float, typer.Option(help="Spread of the means, in standard deviations.")
    ] = 3.0,
    weight_column: Annotated[
        str | None,
        typer.Option("--weight-column", help="Add integer frequency weights in this column."),
    ] = None,
    truth: Annotated[
        str | None, typer.Option(help="Also save the true mixture as a model JSON.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Sample from this model instead.")
    ] = None,
    no_labels: Annotated[
        bool, typer.Option("--no-labels", help="Leave out the true_component column.")
    ] = False,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Draw rows from a random mixture (or from a saved model)."""
    if min(n_components, n_features, n_samples) < 1:
        raise UserError("-k, -d and -n must be at least 1")
    if not 0 < separation < 1e6:
        raise UserError("--separation must be a positive number below 1e6")
    if weight_column in ("true_component", *(f"x{i}" for i in range(n_features))):
        raise UserError(f"--weight-column '{weight_column}' would replace a data column")
    check_outputs(truth, tables_at=() if output_format else (output,))
    mixture_seed, sample_seed, weight_seed = np.random.SeedSequence(parse_seed(seed)).spawn(3)
    if model is not None:
        mixture = modelfile.load(model)
    else:
        mixture = random_mixture(
            n_components,
            n_features,
            covariance_type=covariance_type.value,
            separation=separation,
            rng=np.random.default_rng(mixture_seed),
        )
    names = mixture.feature_names or [f"x{i}" for i in range(mixture.n_features)]
    mixture.feature_names = names
    sample_rng, weight_rng = np.random.default_rng(sample_seed), np.random.default_rng(weight_seed)
    with tables.TableWriter(output, _output_format(output, output_format)) as writer:
        for start in range(0, n_samples, GENERATE_CHUNK_ROWS):  # bounded memory for any -n
            rows = min(GENERATE_CHUNK_ROWS, n_samples - start)
            X, labels = mixture.sample(rows, sample_rng)
            columns = {name: X[:, i] for i, name in enumerate(names)}
            if not no_labels:
                columns["true_component"] = labels
            if weight_column:
                columns[weight_column] = weight_rng.integers(1, 6, rows)
            writer.write(pa.table(columns))
    if truth is not None:
        modelfile.save(mixture, truth)
    Reporter(quiet).note(
        f"drew {n_samples} rows from {mixture.n_components} {mixture.covariance_type} "
        f"components in {mixture.n_features} dimensions"
    )


@command(example="gmmcli fit data.csv -k 3 -o model.json", name="fit")
def fit_command(
    data: DataArg,
    n_components: Annotated[
        int | None, typer.Option("-k", help="Number of components (default: --init-model's).")
    ] = None,
    covariance_type: Annotated[
        CovarianceType | None,
        typer.Option("--covariance-type", help="Covariance structure \\[default: full]."),
    ] = None,
    init: Annotated[InitMethod, typer.Option(help="Initialisation.")] = InitMethod.kmeans,
    init_sample: InitSampleOpt = INIT_SAMPLE,
    init_model: Annotated[
        str | None, typer.Option(help="Start EM from this model's parameters.")
    ] = None,
    n_init: Annotated[int, typer.Option(help="Restarts; the best sound one wins.")] = 1,
    max_iter: Annotated[int, typer.Option(help="EM iterations at most.")] = 100,
    tol: Annotated[
        float, typer.Option(help="Stop when the mean log-likelihood gains less.")
    ] = 1e-3,
    reg_covar: RegCovarOpt = 1e-6,
    seed: SeedOpt = "0",
    dtype: DtypeOpt = Dtype.float64,
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weight_column: WeightOpt = None,
    drop_missing: DropMissingOpt = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 3, writing nothing, if EM did not converge or is degenerate."
        ),
    ] = False,
    output: OutputOpt = "-",
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit a Gaussian mixture by EM and save it as JSON.

    DATA - (stdin) is first copied to a temporary file: EM reads its rows once per
    iteration.
    """
    report = Reporter(quiet)
    check_engine(
        engine, scheduler, data, chunk_rows=chunk_rows, memory_limit=memory_limit, format=fmt
    )
    check_outputs(output)
    start = modelfile.load(init_model) if init_model else None
    if start is not None:
        n_components = n_components or start.n_components
        covariance_type = covariance_type or CovarianceType(start.covariance_type)
        if (n_components, covariance_type.value) != (start.n_components, start.covariance_type):
            raise UserError(
                f"--init-model '{init_model}' has {start.n_components} "
                f"{start.covariance_type} components; -k and --covariance-type must match it"
            )
    if n_components is None:
        raise UserError("give the number of components with -k (or --init-model)")
    chosen = tables.parse_column_list(columns)
    if start is not None and chosen is None and start.feature_names:
        chosen = start.feature_names
    options = dict(
        covariance_type=(covariance_type or CovarianceType.full).value,
        init=init.value,
        init_sample=init_sample,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=parse_seed(seed),
        canonical_order=True,
        dtype=dtype.value,
    )
    if start is not None:
        options.update(
            weights_init=start.weights, means_init=start.means, precisions_init=start.precisions
        )
    inputs = dict(
        chosen=chosen,
        exclude=exclude,
        weight_column=weight_column,
        drop_missing=drop_missing,
        start=start,
        init_model=init_model,
        report=report,
    )
    if engine is Engine.dask:
        model = fit_on_cluster(data, scheduler, n_components, options, **inputs)
    else:
        local = dict(chunk_rows=chunk_rows, memory_limit=memory_limit)
        model = fit_here(data, fmt, n_components, options, **local, **inputs)
    info = model.fit_info
    if strict and not (info.converged and not info.degenerate):
        raise _fail(
            "the fit did not converge or is degenerate (--strict); nothing written", EXIT_STRICT
        )
    write_model(model, output)
    show_summary(model, report)


@command(
    example="gmmcli select-k data.csv --k-max 8 --table grid.csv -o best.json",
    name="select-k",
)
def select_k(
    data: DataArg,
    k_min: Annotated[int, typer.Option(help="Smallest K tried.")] = 1,
    k_max: Annotated[int, typer.Option(help="Largest K tried.")] = 10,
    covariance_types: Annotated[
        str, typer.Option(help="Comma list of covariance structures to try.")
    ] = "full,tied,diag,spherical",
    criterion: Annotated[
        Criterion, typer.Option(help="What picks the winner (cv: held-out log-likelihood).")
    ] = Criterion.bic,
    cv_folds: Annotated[
        int | None, typer.Option(help="Cross-validation folds (default 5 with --criterion cv).")
    ] = None,
    n_init: Annotated[int, typer.Option(help="Restarts per grid point.")] = 3,
    init_sample: InitSampleOpt = INIT_SAMPLE,
    max_iter: Annotated[int, typer.Option(help="EM iterations at most per fit.")] = 1000,
    tol: Annotated[
        float, typer.Option(help="Convergence tolerance (tight, so criteria compare fairly).")
    ] = 1e-6,
    reg_covar: RegCovarOpt = 1e-6,
    seed: SeedOpt = "0",
    dtype: DtypeOpt = Dtype.float64,
    jobs: Annotated[
        int, typer.Option(help="Grid points fitted in parallel processes (one BLAS thread each).")
    ] = 1,
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    weight_column: WeightOpt = None,
    drop_missing: DropMissingOpt = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 3, writing nothing, if the winner did not converge."),
    ] = False,
    output: OutputOpt = "-",
    table: Annotated[
        str | None, typer.Option(help="Write the whole grid here (.csv, .tsv or .parquet).")
    ] = None,
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
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    types = [name.strip() for name in covariance_types.split(",")]
    unknown = [name for name in types if name not in CovarianceType.__members__]
    if unknown:
        raise UserError(
            f"unknown covariance type '{unknown[0]}' in --covariance-types; "
            "use a comma list of full, tied, diag, spherical"
        )
    check_outputs(output, tables_at=(table,))
    k_values = list(range(k_min, k_max + 1))
    options = selection.FitOptions(
        n_init=n_init,
        init_sample=init_sample,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=selection.resolve_seed(parse_seed(seed)),
        dtype=dtype.value,
    )
    grid = dict(
        k_values=k_values,
        covariance_types=types,
        criterion=criterion.value,
        cv_folds=cv_folds,
        options=options,
        jobs=jobs,
    )
    with (
        local_data(
            data,
            fmt,
            chosen=tables.parse_column_list(columns),
            exclude=exclude,
            weight_column=weight_column,
            drop_missing=drop_missing,
            chunk_rows=chunk_rows,
            memory_limit=memory_limit,
            block_rows=lambda n_features: block_rows_for(get_covariance("full"), n_features, k_max),
            report=report,
        ) as source,
        report.captured_warnings(),
        report.progress(len(k_values) * len(types), "select-k") as advance,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", GMMWarning)  # each point's problems are in its row
        points, winner = selection.select_rows(
            source.row_source(),
            on_point=lambda p: advance(1, f"K={p.n_components} {p.covariance_type}"),
            **grid,
        )
    show_grid(points, criterion.value, report)
    if winner is None:
        reasons = points[0].status
        raise UserError(f"every grid point failed, the data support no model ({reasons})")
    if strict and not winner.fit_info.converged:
        raise _fail("the winning fit did not converge (--strict); nothing written", EXIT_STRICT)
    if table is not None:
        write_output(pa.table(selection.table_columns(points)), table, None)
    best = next(p for p in points if p.best)
    if selection.on_edge(best, k_values):
        report.warn(
            f"the best K ({best.n_components}) is at the edge of the range "
            f"{k_min}..{k_max}; widen it with --k-min/--k-max"
        )
    winner.feature_names = source.names
    write_model(winner, output)


def show_grid(points: list[selection.GridPoint], criterion: str, report: Reporter) -> None:
    """The selection grid as a rich table on stderr, the winner marked."""
    grid = Table(title=f"model selection by {criterion} (winner marked *)")
    headers = ["", "K", "covariance", "params", "log-lik", "BIC", "AIC", "ICL"]
    if any(p.cv is not None for p in points):
        headers.append("CV")
    for name in [*headers, "iter", "status"]:
        grid.add_column(name, justify="left" if name in ("covariance", "status") else "right")

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    for p in points:
        cells = [
            "*" if p.best else "",
            str(p.n_components),
            p.covariance_type,
            "" if p.n_parameters is None else str(p.n_parameters),
            number(p.log_likelihood),
            number(p.bic),
            number(p.aic),
            number(p.icl),
        ]
        if "CV" in headers:
            cells.append(number(p.cv))
        converged = (
            "" if p.n_iter is None else f"{p.n_iter}{'' if p.converged else ' (not converged)'}"
        )
        cells += [converged, p.status]
        grid.add_row(*cells, style="bold" if p.best else None)
    report.console.print(grid)


def check_engine(engine: Engine, scheduler: str | None, data: str, **local_options) -> None:
    """Options that only one engine understands, given to the other, are a mistake."""
    if engine is Engine.local:
        if scheduler is not None:
            raise UserError("--scheduler works with --engine dask; add it or leave --scheduler out")
        return
    if data == "-":
        raise UserError(
            "--engine dask reads Parquet from files, not stdin; give a file, folder or glob"
        )
    for name, value in local_options.items():
        if value is not None:
            raise UserError(
                f"--{name.replace('_', '-')} works with the local engine only; leave it out "
                "with --engine dask"
            )


def cluster_engine():
    """gmmcli.engines.cluster, or a UserError naming the extra that provides Dask."""
    try:
        from gmmcli.engines import cluster
    except ImportError:
        raise UserError(
            "--engine dask needs Dask, which is not installed; install the extra: "
            "pip install 'gmmcli[dask]'"
        ) from None
    return cluster


@dataclass
class LocalData:
    """The input on the local engine: streamed from a file, or its features in memory."""

    names: list[str]
    block_rows: int  # rows per block of work
    rows: stream.FileRows | None = None  # when streamed
    features: tables.Features | None = None  # in memory, every row complete

    def row_source(self) -> RowSource:
        if self.rows is not None:
            return self.rows
        X, weights = self.features.X, self.features.weights
        weights = np.ones(len(X)) if weights is None else weights
        return InMemoryRows(X, weights, np.zeros(X.shape[1]), self.block_rows)


@contextlib.contextmanager
def local_data(
    data: str,
    fmt: Format | None,
    *,
    chosen: list[str] | None,
    exclude: str | None,
    weight_column: str | None,
    drop_missing: bool,
    chunk_rows: int | None,
    memory_limit: str | None,
    block_rows: Callable[[int], int],
    report: Reporter,
) -> Iterator[LocalData]:
    """The data for fit or select-k: streamed in chunks past --memory-limit, else read
    whole (Parquet column by column); stdin is spooled to a temporary file first.
    ``block_rows(n_features)`` sizes the blocks of work (--chunk-rows, in memory)."""
    with spooled(data) as path:
        fmt_name = tables.format_for(data, fmt and fmt.value)
        streamed = streams(path, fmt_name, memory_limit, len(chosen) if chosen else None)
        if streamed or fmt_name == "parquet":
            names = stream.file_feature_names(
                path,
                fmt_name,
                chosen,
                tables.parse_column_list(exclude) or [],
                weight_column,
                "stdin" if data == "-" else f"'{data}'",
            )
        if streamed:
            chunk = chunk_rows or stream.DEFAULT_CHUNK_ROWS
            report.features(
                names,
                weight_column,
                f"streamed from {_source_name(data)} in chunks of {chunk} rows",
            )
            blocks = block_rows(len(names))
            rows = stream.FileRows(
                path,
                fmt_name,
                names,
                weight_column,
                chunk,
                drop_missing,
                name=_source_name(data),
                block_rows=blocks,
            )
            yield LocalData(names, blocks, rows=rows)
            return
        if fmt_name == "parquet":
            features = stream.read_parquet_features(path, names, weight_column, _source_name(data))
            note_features(features, report)
        else:
            features = read_features(  # the table itself is not kept past this
                path,
                Format(fmt_name),
                columns=chosen,
                exclude=exclude,
                weight_column=weight_column,
                report=report,
                name=_source_name(data),
            )[1]
        features, dropped = tables.require_complete(
            features, source=_source_name(data), drop_missing=drop_missing
        )
        if dropped:
            report.note(f"dropped {dropped} rows with missing values")
        yield LocalData(
            features.names, chunk_rows or block_rows(len(features.names)), features=features
        )


def fit_here(
    data: str,
    fmt: Format | None,
    n_components: int,
    options: dict,
    *,
    chosen: list[str] | None,
    exclude: str | None,
    weight_column: str | None,
    drop_missing: bool,
    chunk_rows: int | None,
    memory_limit: str | None,
    start: GaussianMixture | None,
    init_model: str | None,
    report: Reporter,
) -> GaussianMixture:
    """fit on the local engine: in memory, or streamed past --memory-limit."""
    cov = get_covariance(options["covariance_type"])
    with local_data(
        data,
        fmt,
        chosen=chosen,
        exclude=exclude,
        weight_column=weight_column,
        drop_missing=drop_missing,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        block_rows=lambda n_features: block_rows_for(cov, n_features, n_components),
        report=report,
    ) as source:
        check_init_model(start, source.names, init_model)
        if source.rows is not None:
            fitter = functools.partial(fit_rows, source.rows)
        else:
            features = source.features
            fitter = functools.partial(
                fit, features.X, weights=features.weights, block_rows=chunk_rows
            )
        return run_fit(
            lambda **kw: fitter(n_components, feature_names=source.names, **kw),
            options,
            options["max_iter"] * options["n_init"],
            report,
        )


def fit_on_cluster(
    data: str,
    scheduler: str | None,
    n_components: int,
    options: dict,
    *,
    chosen: list[str] | None,
    exclude: str | None,
    weight_column: str | None,
    drop_missing: bool,
    start: GaussianMixture | None,
    init_model: str | None,
    report: Reporter,
) -> GaussianMixture:
    """fit --engine dask: the rows stay on the workers; the client sums their statistics."""
    cluster = cluster_engine()
    files = cluster.parquet_files(data)
    names = stream.parquet_feature_names(
        cluster.file_schema(files[0]),
        chosen,
        tables.parse_column_list(exclude) or [],
        weight_column,
        f"'{data}'",
    )
    schema = cluster.common_schema(
        files, f"'{data}'", names + [weight_column] * bool(weight_column)
    )
    check_init_model(start, names, init_model)
    cov = get_covariance(options["covariance_type"])
    with cluster.connect(scheduler or "local") as client:
        rows = cluster.load_rows(
            client,
            files,
            names,
            schema=schema,
            weight_column=weight_column,
            drop_missing=drop_missing,
            name=f"'{data}'",
            block_rows=block_rows_for(cov, len(names), n_components),
        )
        workers = len(client.scheduler_info()["workers"])
        report.features(
            names,
            weight_column,
            f"{rows.n_rows} rows in {rows.n_parts} partitions on {workers} Dask workers",
        )
        if rows.dropped:
            report.note(f"dropped {rows.dropped} rows with missing values")
        return run_fit(
            lambda **kw: fit_rows(rows, n_components, feature_names=names, **kw),
            options,
            options["max_iter"] * options["n_init"],
            report,
        )


def predict_on_cluster(
    data: str,
    scheduler: str | None,
    mixture: GaussianMixture,
    transform,
    folder: str | None,
    *,
    weight_column: str | None = None,
    columns: list[str] | None,
    accept,
    report: Reporter,
) -> list:
    """classify/score --engine dask: ``transform`` every partition on the workers, its
    table written into ``folder`` (if given) as one Parquet file per partition."""
    cluster = cluster_engine()
    files = cluster.parquet_files(data)
    if folder is not None:
        check_output_folder(folder, [data, *files])
    outputs.require_feature_names(mixture)
    stream.parquet_feature_names(
        cluster.file_schema(files[0]), mixture.feature_names, [], weight_column, f"'{data}'"
    )
    schema = cluster.common_schema(files, f"'{data}'", columns)  # columns=None: whole tables
    plural = "s" if len(files) > 1 else ""
    report.features(mixture.feature_names, weight_column, f"from {len(files)} Parquet file{plural}")
    with cluster.connect(scheduler or "local") as client:
        results = cluster.write_parts(
            client,
            files,
            schema,
            transform,
            folder,
            columns=columns,
            accept=accept,
            name=f"'{data}'",
        )
    if folder is not None:
        report.note(f"wrote {len(results)} Parquet files (one per partition) to {folder}")
    return results


def check_init_model(start: GaussianMixture | None, names: list[str], path: str | None) -> None:
    if start is not None and start.feature_names and names != start.feature_names:
        raise UserError(
            f"--init-model '{path}' was fitted on {', '.join(start.feature_names)}; "
            "select the same columns"
        )


def run_fit(fitter, options: dict, steps: int, report: Reporter) -> GaussianMixture:
    """Run a fit with its warnings shown as lines and a progress bar on a terminal."""
    with report.captured_warnings(), report.progress(steps, "EM") as advance:
        return fitter(
            on_iteration=lambda r, it, ll: advance(1, f"restart {r}, iteration {it}: {ll:.6g}"),
            **options,
        )


@contextlib.contextmanager
def spooled(data: str):
    """The input as a path: stdin is first copied to a temporary file, since fitting reads
    its data once per EM iteration (and Parquet needs its footer, at the end)."""
    if data != "-":
        yield data
        return
    with tempfile.NamedTemporaryFile(prefix="gmmcli-stdin-") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.flush()
        yield spool.name


def streams(path: str, fmt: str, memory_limit: str | None, n_columns: int | None) -> bool:
    """Whether reading ``path`` whole would exceed --memory-limit (default: half of the
    memory available now), so that it is streamed in chunks instead."""
    limit = stream.parse_size(memory_limit) if memory_limit else stream.available_memory() // 2
    try:
        return stream.in_memory_bytes(path, fmt, n_columns) > limit
    except (OSError, pa.ArrowException):
        return False  # unreadable: the in-memory reader reports it properly


def show_summary(model: GaussianMixture, report: Reporter) -> None:
    info = model.fit_info
    table = Table(title=f"{model.n_components} {model.covariance_type} components")
    table.add_column("component", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("mean")
    for k in range(model.n_components):
        mean = ", ".join(f"{v:.4g}" for v in model.means[k])
        table.add_row(str(k), f"{model.weights[k]:.4f}", mean)
    report.console.print(table)
    report.note(
        f"log-likelihood {info.log_likelihood:.6g} (mean {info.mean_log_likelihood:.6g}), "
        f"BIC {info.bic:.6g}, {info.n_iter} iterations, "
        f"converged: {'yes' if info.converged else 'no'}, "
        f"degenerate: {'yes' if info.degenerate else 'no'}"
    )


def input_chunks(
    data: str,
    fmt: Format | None,
    chunk_rows: int | None,
    memory_limit: str | None,
    float_columns: list[str],
) -> Iterator[pa.Table]:
    """The input as tables: whole when it fits in --memory-limit, else chunk by chunk.

    CSV on stdin is always streamed (a pipe of any length works); Parquet on stdin is read
    whole, its footer being at the end.
    """
    fmt_name = tables.format_for(data, fmt and fmt.value)
    if data == "-":  # noqa: SIM108 (two cases, each with its reason above)
        streamed = fmt_name != "parquet"
    else:
        streamed = streams(data, fmt_name, memory_limit, None)
    if not streamed:
        yield tables.read_table(data, fmt_name)
        return
    rows = 0
    size = chunk_rows or stream.DEFAULT_CHUNK_ROWS
    for batch in stream.open_batches(data, fmt_name, size, float_columns=float_columns):
        rows += batch.num_rows
        yield pa.Table.from_batches([batch])
    if rows == 0:
        raise UserError(f"{_source_name(data)} has no data rows; give at least one row of data")


def model_chunks(
    data: str,
    fmt: Format | None,
    mixture: GaussianMixture,
    *,
    weight_column: str | None,
    drop_missing: bool,
    chunk_rows: int | None,
    memory_limit: str | None,
    report: Reporter,
) -> Iterator[tuple[pa.Table, tables.Features]]:
    """(input chunk, the model's features in it) for every chunk of the input.

    Rows with a missing feature are an error, or with --drop-missing are marked missing
    and get empty outputs (the outputs stay aligned with the input).
    """
    outputs.require_feature_names(mixture)
    first_row = predicted = 0
    weights = [weight_column] if weight_column else []
    for table in input_chunks(data, fmt, chunk_rows, memory_limit, mixture.feature_names + weights):
        if first_row == 0:
            report.features(mixture.feature_names, weight_column)
        features = outputs.model_rows(
            table,
            mixture,
            weight_column=weight_column,
            source=_source_name(data),
            first_row=first_row,
            drop_missing=drop_missing,
        )
        first_row += table.num_rows
        predicted += int((~features.missing).sum())
        yield table, features
    require_predicted(predicted, data)


def _model_features(
    data: str, model: GaussianMixture, report: Reporter
) -> tuple[pa.Table, tables.Features]:
    """The whole table and the model's feature columns from it, by name."""
    outputs.require_feature_names(model)
    return read_features(data, None, columns=model.feature_names, report=report)


def _output_format(output: str, output_format: Format | None) -> str | None:
    return output_format.value if output_format else ("csv" if output == "-" else None)


@command(example="gmmcli classify data.csv --model model.json -o labelled.csv")
def classify(
    data: DataArg,
    model: ModelOpt,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    no_probabilities: Annotated[
        bool, typer.Option("--no-probabilities", help="Write only the component column.")
    ] = False,
    only_new_columns: Annotated[
        bool, typer.Option("--only-new-columns", help="Leave the input columns out.")
    ] = False,
    drop_missing: DropMissingOpt = False,
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Label every row with its most probable component and membership probabilities.

    Large files (past --memory-limit) and CSV on stdin are read and written chunk by chunk.
    With --engine dask, -o is a folder: one Parquet file per partition.
    """
    report = Reporter(quiet)
    check_engine(
        engine,
        scheduler,
        data,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        output_format=output_format,
        format=fmt,
    )
    if engine is Engine.dask:
        if output == "-":
            raise UserError(
                "classify --engine dask writes a folder of Parquet files; give it with -o FOLDER"
            )
        mixture = modelfile.load(model)

        def transform(table: pa.Table, index: int) -> tuple[pa.Table, tuple[int, list[str]]]:
            features = outputs.model_rows(
                table,
                mixture,
                weight_column=None,
                source=f"partition {index} of '{data}'",
                first_row=0,
                drop_missing=drop_missing,
            )
            labelled = outputs.classified(
                table,
                features,
                mixture,
                probabilities=not no_probabilities,
                only_new_columns=only_new_columns,
            )
            return labelled, (int((~features.missing).sum()), outputs.replaced_columns(table))

        results = predict_on_cluster(
            data,
            scheduler,
            mixture,
            transform,
            output,
            columns=mixture.feature_names if only_new_columns else None,
            accept=lambda results: require_predicted(sum(n for n, _ in results), data),
            report=report,
        )
        if results[0][1] and not only_new_columns:
            report.note(f"replacing the existing columns {', '.join(results[0][1])}")
        return
    check_outputs(tables_at=() if output_format else (output,))
    mixture = modelfile.load(model)
    chunks = model_chunks(
        data,
        fmt,
        mixture,
        weight_column=None,
        drop_missing=drop_missing,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        report=report,
    )
    with tables.TableWriter(output, _output_format(output, output_format)) as writer:
        for index, (table, features) in enumerate(chunks):
            replaced = outputs.replaced_columns(table)
            if replaced and index == 0 and not only_new_columns:
                report.note(f"replacing the existing columns {', '.join(replaced)}")
            writer.write(
                outputs.classified(
                    table,
                    features,
                    mixture,
                    probabilities=not no_probabilities,
                    only_new_columns=only_new_columns,
                )
            )


@command(example="gmmcli score data.csv --model model.json --per-sample scores.csv")
def score(
    data: DataArg,
    model: ModelOpt,
    weight_column: WeightOpt = None,
    per_sample: Annotated[
        str | None, typer.Option(help="Also write every row with its log_likelihood.")
    ] = None,
    drop_missing: DropMissingOpt = False,
    chunk_rows: ChunkRowsOpt = None,
    memory_limit: MemoryLimitOpt = None,
    engine: EngineOpt = Engine.local,
    scheduler: SchedulerOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the log-likelihood, BIC and AIC of data under a model, as JSON on stdout.

    Large files (past --memory-limit) and CSV on stdin are read chunk by chunk.
    With --engine dask, --per-sample is a folder: one Parquet file per partition.
    """
    report = Reporter(quiet)
    if per_sample == "-":
        raise UserError("--per-sample needs a file: stdout carries the summary JSON")
    check_engine(
        engine, scheduler, data, chunk_rows=chunk_rows, memory_limit=memory_limit, format=fmt
    )
    if engine is Engine.dask:
        mixture = modelfile.load(model)

        def transform(table: pa.Table, index: int) -> tuple[pa.Table, outputs.Scores]:
            features = outputs.model_rows(
                table,
                mixture,
                weight_column=weight_column,
                source=f"partition {index} of '{data}'",
                first_row=0,
                drop_missing=drop_missing,
            )
            return outputs.scored(table, features, mixture)

        def accept(results: list[outputs.Scores]) -> None:
            total = sum(results, outputs.Scores())
            require_predicted(total.n_samples, data)
            require_positive_weight(total, weight_column, data)

        weights = [weight_column] if weight_column else []
        scores = sum(
            predict_on_cluster(
                data,
                scheduler,
                mixture,
                transform,
                per_sample,
                weight_column=weight_column,
                columns=None if per_sample else mixture.feature_names + weights,
                accept=accept,
                report=report,
            ),
            outputs.Scores(),
        )
        print_scores(scores, mixture)
        return
    check_outputs(tables_at=(per_sample,))
    mixture = modelfile.load(model)
    chunks = model_chunks(
        data,
        fmt,
        mixture,
        weight_column=weight_column,
        drop_missing=drop_missing,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        report=report,
    )
    scores = outputs.Scores()
    writer = tables.TableWriter(per_sample) if per_sample else contextlib.nullcontext()
    with writer:
        for table, features in chunks:
            table, chunk_scores = outputs.scored(table, features, mixture)
            scores += chunk_scores
            if per_sample:
                writer.write(table)
        require_positive_weight(scores, weight_column, data)
    print_scores(scores, mixture)


def require_predicted(n_predicted: int, data: str) -> None:
    if n_predicted == 0:
        raise UserError(
            f"every row of {_source_name(data)} has a missing or infinite value in the "
            "model's columns; clean the data"
        )


def require_positive_weight(scores: outputs.Scores, weight_column: str | None, data: str) -> None:
    if scores.total_weight <= 0:
        raise tables.no_positive_weight(weight_column, _source_name(data))


def print_scores(scores: outputs.Scores, mixture: GaussianMixture) -> None:
    """score's summary: one JSON object on stdout."""
    result = {
        "n_samples": scores.n_samples,
        "total_weight": scores.total_weight,
        "log_likelihood": scores.log_likelihood,
        "mean_log_likelihood": scores.log_likelihood / scores.total_weight,
        "bic": bic(scores.log_likelihood, mixture.n_parameters, scores.total_weight),
        "aic": aic(scores.log_likelihood, mixture.n_parameters),
    }
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


@command(example="gmmcli plot data.csv --model model.json -o fit.png")
def plot(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Data file (.csv, .tsv, .parquet/.pq) or - for stdin; leave out with --table."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Draw this model (JSON from gmmcli fit) over the data."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="Draw this select-k grid (from select-k --table) instead of data."),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Image file: .png, .svg or .pdf.")
    ] = ...,
    columns: Annotated[
        str | None,
        typer.Option(help="Two features to draw, x,y (default: principal axes when D > 2)."),
    ] = None,
    max_points: Annotated[
        int, typer.Option(help="Draw at most this many rows, a random subsample (--seed).", min=1)
    ] = 20000,
    seed: SeedOpt = "0",
    size: Annotated[str, typer.Option(help="Figure size in inches, WIDTHxHEIGHT.")] = "8x6",
    dpi: Annotated[int, typer.Option(help="Dots per inch: a PNG is size × dpi pixels.")] = 150,
    quiet: QuietOpt = False,
) -> None:
    r"""Draw a fit over its data, the data alone, or a select-k grid, as PNG, SVG or PDF.

    With --model: rows coloured by most probable component, means, contours at distance 1, 2.

    More than two features: the first two principal axes of the data, or two --columns.

    Without --model: the rows alone, coloured by a component or true_component column.

    With --table: the criterion against K, one line per covariance type.

    Needs the plot extra: pip install 'gmmcli\[plot]'
    """
    from gmmcli import plot as pictures  # matplotlib only loads when a picture is drawn

    report = Reporter(quiet)
    image = pictures.Image.from_options(output, size, dpi)
    if data is None and table is None:
        raise UserError("give a DATA file to draw (--model for a fit), or --table with a grid")
    if data is not None and table is not None:
        raise UserError("give a DATA file or --table, not both: a picture shows one of them")
    if table is not None and (model is not None or columns is not None):
        raise UserError("--table draws the select-k grid alone; leave out --model and --columns")
    pictures.require_matplotlib()
    if table is not None:
        figure = pictures.grid_figure(
            tables.read_table(table).to_pydict(), image, source=_source_name(table)
        )
    else:
        chosen = tables.parse_column_list(columns)
        pictures.check_columns(chosen)
        mixture = modelfile.load(model) if model is not None else None
        if mixture is None:
            frame, features = read_features(data, None, columns=chosen, report=report)
        else:
            frame, features = _model_features(data, mixture, report)
        keep = ~features.missing
        if not keep.any():
            raise UserError(
                f"every row of {_source_name(data)} has a missing feature value; "
                "clean the data or choose other columns"
            )
        if not keep.all():
            report.note(f"left out {int((~keep).sum())} row(s) with missing values")
        X = features.X[keep]
        view = pictures.choose_view(X, features.names, chosen)
        shown = pictures.subsample(len(X), max_points, parse_seed(seed))
        if mixture is not None:
            figure = pictures.fit_figure(X, shown, view, mixture, image)
        else:
            label = next((n for n in pictures.LABEL_COLUMNS if n in frame.column_names), None)
            labels = None
            if label is not None:
                values = frame.column(frame.column_names.index(label)).to_pylist()
                labels = (label, [v for v, kept in zip(values, keep, strict=True) if kept])
            figure = pictures.data_figure(
                X, shown, view, image, source=_source_name(data), labels=labels
            )
    pictures.save(figure, image)
    report.note(f"drew {output} ({image.width:g}x{image.height:g} in at {image.dpi} dpi)")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]error:[/] interrupted")
        sys.exit(EXIT_INTERRUPTED)
