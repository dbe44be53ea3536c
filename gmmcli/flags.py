"""The command line's shared declarations: choices built from the core's lists, and the
options that several commands take, named alike everywhere, in help panels."""

from __future__ import annotations

import inspect
from enum import Enum
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand

from gmmcli.core.init import INIT_CHOICES
from gmmcli.core.options import COVARIANCE_CHOICES, CRITERIA, DTYPES
from gmmcli.inputs import ENGINES, MISSING_CHOICES
from gmmcli.io.tables import FORMATS

MODEL, INPUT, SCALE, OUTPUT = "Model", "Input", "Scale-out", "Output"


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of the core's choices, so that values tab-complete."""
    return Enum(name, {value: value for value in values}, type=str)


InitMethod = choices("InitMethod", INIT_CHOICES)
COVARIANCE_HELP = f"Covariance structure: {COVARIANCE_CHOICES}, by either name, in any case."
Criterion = choices("Criterion", CRITERIA)
Dtype = choices("Dtype", DTYPES)
Engine = choices("Engine", ENGINES)
Format = choices("Format", FORMATS)
Missing = choices("Missing", MISSING_CHOICES)


# Flags that are not the parameter's name with dashes.
FLAGS = {
    "n_components": "-k",
    "n_features": "-d",
    "n_samples": "-n",
    "weights": "--weight-column",
    "labels": "--label-column",
    "start": "--init-model",
}


def flag(parameter: str) -> str:
    """The flag that sets a parameter of the core or the jobs."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def grid_flag(parameter: str) -> str:
    """flag() for select-k, whose grid sets the components by --k-min and --k-max."""
    return "K (--k-min to --k-max)" if parameter == "n_components" else flag(parameter)


def option(*names: str, panel: str | None = None, **kwargs):
    return typer.Option(*names, rich_help_panel=panel, **kwargs)


# What an option's value is, by parameter name (alike in every command), as --help shows
# it after the flag in place of the type (<str>, or <int range> for a number with bounds);
# a flag shows none, a choice its values.
VALUE_NAMES = {
    "output": "<path>",
    "table": "<file>",
    "truth": "<file>",
    "model": "<file>",
    "init_model": "<file>",
    "per_sample": "<file>",
    "columns": "<names>",
    "exclude": "<names>",
    "covariance_types": "<names>",
    "covariance_type": "<name>",
    "weight_column": "<name>",
    "label_column": "<name>",
    "class_priors": "<name=p,...>",
    "color_by": "<column>",
    "init": "<method>",
    "seed": "<int|random>",
    "chunk_rows": "<int>",
    "init_sample": "<int>",
    "max_points": "<int>",
    "draws": "<int>",
    "memory_limit": "<size>",
    "scheduler": "<address>",
    "size": "<WxH>",
}


class PlainHelp:
    """--help that reads well: paragraphs wrapped at the terminal's width (rich keeps the
    line breaks of a docstring), and no type names that say nothing: options show
    VALUE_NAMES, flags no <bool>, an argument no <str> (its help says what it takes)."""

    def __init__(self, *args, help: str | None = None, **kwargs):
        super().__init__(*args, help=help and reflowed(help), **kwargs)

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None
            elif getattr(param, "is_flag", False):
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = VALUE_NAMES.get(param.name)
        return params


class Command(PlainHelp, TyperCommand):
    """A subcommand whose --help reads well (PlainHelp), and which reads --drop-missing,
    the older name, as --missing drop."""

    def parse_args(self, ctx, args):
        cut = args.index("--") if "--" in args else len(args)
        given = {arg.split("=")[0] for arg in args[:cut]}
        if {"--drop-missing", "--missing"} <= given:
            raise typer.BadParameter("--drop-missing is --missing drop: give one of them", ctx)
        older = ("--missing", "drop")
        head = [
            word for arg in args[:cut] for word in (older if arg == "--drop-missing" else [arg])
        ]
        return super().parse_args(ctx, head + args[cut:])


def reflowed(text: str) -> str:
    """A docstring's paragraphs each on one line."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


# Options shared by several commands, named alike everywhere.
DataArg = Annotated[
    str,
    typer.Argument(
        help="Data file (.csv or .tsv, compressed .csv.gz, .csv.zst, .csv.bz2 too; "
        ".parquet/.pq) or - for stdin."
    ),
]
FormatOpt = Annotated[
    Format | None, option("--format", panel=INPUT, help="Input format; overrides the extension.")
]
OutputOpt = Annotated[
    str, option("--output", "-o", panel=OUTPUT, help="Output path; - for stdout.")
]
OutputFormatOpt = Annotated[
    Format | None,
    option("--output-format", panel=OUTPUT, help="Output table format; overrides the extension."),
]
ColumnsOpt = Annotated[
    str | None,
    option(panel=INPUT, help="Comma list of feature columns (default: every numeric column)."),
]
ExcludeOpt = Annotated[str | None, option(panel=INPUT, help="Comma list of columns to leave out.")]
WeightOpt = Annotated[
    str | None,
    option("--weight-column", panel=INPUT, help="Column of frequency weights (counts per row)."),
]
LabelOpt = Annotated[
    str | None,
    option(
        "--label-column",
        panel=INPUT,
        help="Column of class labels (text; an empty cell is no label), never a feature: "
        "each class names a component, and a labelled row stays at its class's.",
    ),
]
ClassGridsOpt = Annotated[
    str | None,
    option(
        "--label-column",
        panel=INPUT,
        help="Column of class labels, on every row: a grid for each class by BIC "
        "(mclust's MclustDA), the winners joined into one model of classes.",
    ),
]
ScoredLabelOpt = Annotated[
    str | None,
    option(
        "--label-column",
        panel=INPUT,
        help="Column of class labels: also report error_rate, brier and confusion (a "
        "model fitted with labels).",
    ),
]
SharedStructureOpt = Annotated[
    bool,
    option(
        "--shared-structure",
        panel=MODEL,
        help="With --label-column: K components a class, one structure for every class, "
        "by the total BIC (--k-max 1: mclust's EDDA, LDA with tied, QDA with full).",
    ),
]
FitStrictOpt = Annotated[
    bool,
    option(
        "--strict",
        panel=OUTPUT,
        help="Exit 3, writing nothing, if EM did not converge or is degenerate.",
    ),
]
ClassPriorsOpt = Annotated[
    str | None,
    option(
        "--class-priors",
        panel=MODEL,
        help="Each class's prior as NAME=P,NAME=P (every row labelled; default: the "
        "classes' shares).",
    ),
]
MissingOpt = Annotated[
    Missing,
    option(
        panel=INPUT,
        help="Rows with a missing value (an empty cell, null or NaN): refuse them (an error), "
        "drop them, or fit and predict through the features they have (marginal). ±inf is "
        "always an error. --drop-missing is --missing drop.",
    ),
]
SeedOpt = Annotated[
    str,
    option(
        panel=MODEL,
        help="Random seed: an integer, or 'random' for fresh entropy (recorded in a fitted "
        "model). The Python API's fit defaults to fresh entropy (seed=None) instead.",
    ),
]
QuietOpt = Annotated[
    bool, option("--quiet", "-q", panel=OUTPUT, help="Print nothing on stderr but errors.")
]
ModelOpt = Annotated[
    str, option("--model", "-m", panel=MODEL, help="Model JSON written by gmmcli fit.")
]
RegCovarOpt = Annotated[
    float,
    option(panel=MODEL, help="Added to every covariance diagonal (absolute, as scikit-learn)."),
]
DtypeOpt = Annotated[
    Dtype,
    option(
        panel=MODEL,
        help="Precision of the E-step (float32: faster; statistics still summed in float64).",
    ),
]
ChunkRowsOpt = Annotated[
    int | None,
    option(
        panel=SCALE,
        help="Stream the file in chunks of this many rows (CSV chunks are cut by an estimate "
        "of bytes; at most what --memory-limit allows). Without it, a file is streamed only "
        "past --memory-limit, in chunks of up to 200,000 rows. It sizes reading only: "
        "results are the same bytes whatever the chunks.",
        min=1,
    ),
]
MemoryLimitOpt = Annotated[
    str | None,
    option(
        panel=SCALE,
        help="Cap on the memory the command's processes allocate beyond their program and "
        "libraries (rows, buffers, forked workers; e.g. 2GB; default: half the memory "
        "available at start). The file is read whole if that fits, else in chunks sized "
        "to fit, with the workers that fit; a limit too small exits 2 naming the smallest "
        "that works.",
    ),
]
EngineOpt = Annotated[
    Engine,
    option(
        panel=SCALE,
        help="Where rows are processed: here (local), or on a Dask cluster (dask: DATA is a "
        "Parquet file, a folder of them or a quoted glob; needs the dask extra).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    option(
        panel=SCALE,
        help="With --engine dask: a scheduler ADDRESS (e.g. tcp://10.0.0.5:8786), or "
        "local[:N] to start N worker processes here for this run \\[default: local].",
    ),
]
JobsOpt = Annotated[
    int,
    option(
        "--jobs",
        panel=SCALE,
        help="Grid points fitted in parallel processes (one BLAS thread each; forked, they "
        "share the rows; as many as --memory-limit allows).",
    ),
]
InitSampleOpt = Annotated[
    int,
    option(
        panel=MODEL,
        help="k-means++ seeds on a seeded weighted sample of about this many rows when there "
        "are more (one pass; Lloyd then uses every row); 0 seeds on every row.",
        min=0,
    ),
]
InitOpt = Annotated[
    InitMethod,
    option(
        panel=MODEL,
        help=f"How each restart starts: {', '.join(INIT_CHOICES)} (hc: mclust's model-based "
        "hierarchical clustering; auto: hc for the first restart, kmeans for the others).",
    ),
]
HcRowsOpt = Annotated[
    int,
    option(
        panel=MODEL,
        help="hc clusters at most this many distinct rows, a seeded sample drawn by weight "
        "when there are more (at least K).",
    ),
]
MaxIterOpt = Annotated[int, option(panel=MODEL, help="EM iterations at most.")]
