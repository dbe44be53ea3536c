"""Pictures for `gmmcli plot`: a fit over its data, the data alone, a select-k grid.

This is the optional ``plot`` extra (``pip install 'gmmcli[plot]'``). matplotlib is imported
inside the drawing functions only, so importing this module (or gmmcli) never loads it, and
the geometry here (principal axes, projections, ellipses, subsamples) is plain numpy that
tests check numerically. Figures are built with matplotlib's object API, never pyplot's
global state: the Agg canvas renders PNG, matplotlib's own backends SVG and PDF.

Stdout is never written; the caller reports on stderr.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gmmcli.core.model import GaussianMixture
from gmmcli.core.select import by_class, one_shared_grid
from gmmcli.errors import UserError
from gmmcli.io.atomic import atomic_writer, check_output_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'gmmcli[plot]'"
IMAGE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
MAX_PIXELS = 2**15  # per side: far beyond any screen or print, well inside Agg's limits
# Colour-blind-safe qualitative palette (Okabe & Ito 2008), yellow and black last: yellow is
# faint on white, black is the colour of means' edges and of the contour key.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
)
# Past 8 groups colours repeat; the marker shape then tells the cycles apart.
MARKERS = ("o", "s", "^", "D", "v", "P")
MAHALANOBIS_RADII = ((1.0, "-"), (2.0, "--"))
# Data-only pictures are coloured by the first of these columns the table has.
LABEL_COLUMNS = ("component", "true_component")
MAX_LABELS = len(OKABE_ITO) * len(MARKERS)
MAX_FAILED_LISTED = 6
GRID_MARKER_SIZE = 7.0  # points across
# A grid's key, measured at matplotlib's default font size: an entry's height in the small
# font (with its spacing), and in the x-small font a column's marker and gap, and a letter.
LEGEND_ENTRY_INCHES = 0.19
TITLE_INCHES = 0.5
X_LABEL_INCHES = 0.45  # the tick labels and the label under the axes
LEGEND_HANDLE_INCHES = 0.3
LEGEND_CHARACTER_INCHES = 0.04
SUBTITLE_CHARACTER_INCHES = 0.08  # a letter of a subtitle, at the medium font size
KEY_TITLE = "covariance structure"
# A panel's title stands this far (points) above its plot, leaving room for its best point.
PANEL_TITLE_PAD = 14.0
MIN_PANEL_INCHES = (0.8, 0.6)  # a panel's plot, width by height: the least that reads
PANEL_INCHES = (3.0, 2.5)  # room enough for a panel, width by height, in a --size to suggest


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class Image:
    """Where and how a picture is written: path, format (by extension), inches and dpi."""

    path: str
    format: str
    width: float
    height: float
    dpi: int

    @classmethod
    def from_options(cls, path: str, size: str, dpi: int) -> Image:
        """Check -o, --size WxH and --dpi before any work is done."""
        fmt = IMAGE_FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise UserError(
                f"cannot tell the image format of '{path}' from its extension; "
                "name the output .png, .svg or .pdf"
            )
        check_output_path(path)  # checked again when writing; here to fail before work
        width, height = parse_size(size)
        if dpi < 1:
            raise UserError(f"--dpi must be at least 1, got {dpi}")
        if max(width, height) * dpi > MAX_PIXELS:
            raise UserError(
                f"--size {size} at --dpi {dpi} is over {MAX_PIXELS} pixels a side; "
                "make the size or the dpi smaller"
            )
        return cls(path, fmt, width, height, dpi)


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*[xX×]\s*(\d+(?:\.\d*)?|\.\d+)\s*")


def parse_size(text: str) -> tuple[float, float]:
    """--size "8x6" -> (8.0, 6.0) inches, width by height."""
    match = _SIZE.fullmatch(text)
    if match is None or min(float(match[1]), float(match[2])) <= 0:
        raise UserError(
            f"--size must be WIDTHxHEIGHT in inches, both positive, like 8x6; got {text!r}"
        )
    return float(match[1]), float(match[2])


def require_matplotlib() -> None:
    """A one-line UserError naming the extra when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(
            f"gmmcli plot needs matplotlib, which is not installed; install it with {INSTALL_HINT}"
        ) from None


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class View:
    """The two drawn axes as a linear map of the D features: x -> (x - centre) @ axes."""

    centre: np.ndarray  # (D,)
    axes: np.ndarray  # (D, 2), orthonormal columns
    labels: tuple[str, str]
    description: str  # for the subtitle; empty when the picture shows the features as they are
    projected: bool = False  # principal axes: a rotation, so drawn with equal scales

    def points(self, X: np.ndarray) -> np.ndarray:
        """Rows (n, D) as drawn coordinates (n, 2)."""
        return (np.asarray(X, dtype=float) - self.centre) @ self.axes

    def covariances(self, covariances: np.ndarray) -> np.ndarray:
        """Full covariances (K, D, D) as those of the drawn coordinates: Vᵀ Σ V, (K, 2, 2).

        Exact: a linear map of a Gaussian is Gaussian, so contours drawn from these are the
        contours of each component's distribution in the picture's coordinates.
        """
        return np.einsum("di,kde,ej->kij", self.axes, covariances, self.axes)


def principal_view(X: np.ndarray) -> View:
    """Project onto the first two principal axes of the rows (largest variance first).

    Each axis's sign is fixed so that its largest entry is positive: the same data give
    the same picture, whatever the eigensolver returns.
    """
    X = np.asarray(X, dtype=float)
    centre = X.mean(axis=0)
    variances, vectors = np.linalg.eigh(np.cov(X, rowvar=False, bias=True))
    order = np.argsort(variances)[::-1][:2]
    axes = vectors[:, order]
    flip = axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0
    axes[:, flip] *= -1
    total = variances.clip(min=0).sum()
    shares = [f" ({v / total:.0%} of variance)" if total > 0 else "" for v in variances[order]]
    return View(
        centre,
        axes,
        (f"principal axis 1{shares[0]}", f"principal axis 2{shares[1]}"),
        f"projected onto the first two principal axes of the {X.shape[1]} features",
        projected=True,
    )


def column_view(names: Sequence[str], chosen: Sequence[str]) -> View:
    """Draw two of the features as they are (for a model: its marginal on those two)."""
    for name in chosen:
        if name not in names:
            raise UserError(
                f"--columns names '{name}', which is not among the features "
                f"({', '.join(names)}); choose two of them"
            )
    axes = np.zeros((len(names), 2))
    axes[list(names).index(chosen[0]), 0] = 1.0
    axes[list(names).index(chosen[1]), 1] = 1.0
    description = "" if len(names) == 2 else f"features {chosen[0]} and {chosen[1]} of {len(names)}"
    return View(np.zeros(len(names)), axes, (chosen[0], chosen[1]), description)


def check_columns(chosen: Sequence[str] | None) -> None:
    """--columns, when given, names exactly two features."""
    if chosen is not None and len(chosen) != 2:
        raise UserError(f"--columns takes two names, x,y; got {len(chosen)}")


def choose_view(X: np.ndarray, names: Sequence[str], chosen: Sequence[str] | None) -> View:
    """--columns x,y when given; else both features for D = 2, principal axes for D > 2."""
    if chosen is not None:
        check_columns(chosen)
        return column_view(names, chosen)
    if len(names) < 2:
        raise UserError(
            f"gmmcli plot draws two features and there is only one ({names[0]}); "
            "give data (and a model) with two or more features"
        )
    if len(names) == 2:
        return column_view(names, names)
    return principal_view(X)


def _component_name(model: GaussianMixture, k: int) -> str:
    """A component as the key names it: its number, and its class in a model of classes."""
    name = None if model.classes is None else model.classes.class_of(k)
    return str(k) if name is None else f"{k} ({name})"


def ellipse(mean: np.ndarray, covariance: np.ndarray, radius: float, n_points: int = 121):
    """Points (n_points, 2) on {p : (p - μ)ᵀ Σ⁻¹ (p - μ) = radius²}, closed (last = first).

    Semi-axes radius·√λ along Σ's eigenvectors: p = μ + V diag(radius·√λ) (cos t, sin t).
    """
    variances, vectors = np.linalg.eigh(np.asarray(covariance, dtype=float))
    t = np.linspace(0.0, 2.0 * math.pi, n_points)
    circle = np.column_stack([np.cos(t), np.sin(t)])
    circle[-1] = circle[0]  # closed exactly (sin 2π is not quite 0)
    return np.asarray(mean, dtype=float) + (circle * radius * np.sqrt(variances)) @ vectors.T


def subsample(n_rows: int, max_points: int, seed: int | None) -> np.ndarray:
    """Indices of the rows to draw: all of them, or ``max_points`` drawn by ``seed``, sorted."""
    if n_rows <= max_points:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=max_points, replace=False))


def marker_area(n_points: int) -> float:
    """Scatter marker area (points²): smaller as more rows are drawn."""
    return float(np.clip(350.0 / math.sqrt(max(n_points, 1)), 2.0, 20.0))


def marker_opacity(n_points: int) -> float:
    """Opacity of a sure point: lower as more rows are drawn, so dense clouds show shape."""
    return float(np.clip(0.85 * (2000.0 / max(n_points, 1)) ** (1 / 3), 0.35, 0.85))


def group_style(index: int) -> tuple[str, str]:
    """(colour, marker) of component or label number ``index``."""
    return OKABE_ITO[index % len(OKABE_ITO)], MARKERS[(index // len(OKABE_ITO)) % len(MARKERS)]


# ------------------------------------------------------------------------------ drawing


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Settings for building and saving: fixed SVG ids, so reruns give the same bytes."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "gmmcli", "axes.axisbelow": True}):
        yield


def _figure(image: Image) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(image.width, image.height), dpi=image.dpi, layout="constrained")
    return figure, _axes(figure)


def _axes(figure: Figure, *where: Any) -> Axes:
    """A plot on ``figure`` (in the cell ``where`` of a grid of them), with a faint grid."""
    axes = figure.add_subplot(*where)
    axes.grid(True, color="0.9", linewidth=0.8)
    return axes


def _titles(figure: Figure, axes: Axes, title: str, subtitle: str) -> None:
    figure.suptitle(title, fontsize="large")
    if subtitle:
        axes.set_title(subtitle, fontsize="medium", color="0.3")


def _legend(axes: Axes, handles: list, title: str | None = None) -> None:
    """The key, outside the axes on the right, so it never hides data."""
    axes.legend(
        handles=handles,
        title=title,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize="small",
        title_fontsize="small",
        frameon=False,
    )


def _grid_legend(figure: Figure, axes: Axes, handles: list, image: Image) -> None:
    """The key beside the axes when it fits the figure's height in one column, as with a
    few structures or the default size; else under the plot in as many columns as fit the
    width, so that all fourteen structures stay readable in a small picture."""
    from matplotlib.transforms import offset_copy

    if _key_fits_beside(handles, image):
        _legend(axes, handles, KEY_TITLE)
        return
    axes.legend(  # an axes' legend: the layout keeps it clear of the note of failed points
        handles=handles,
        title=KEY_TITLE,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=offset_copy(axes.transAxes, figure, y=-X_LABEL_INCHES, units="inches"),
        ncols=_key_columns(handles, image),
        fontsize="x-small",
        title_fontsize="x-small",
        columnspacing=1.0,
        handlelength=1.5,
        frameon=False,
    )


def _panels_legend(figure: Figure, handles: list, image: Image) -> None:
    """The key of a picture of panels, one for them all, beside them in as many columns as
    the figure's height needs (under them, it would meet the note of failed points)."""
    per_column = max(1, int((image.height - TITLE_INCHES) / LEGEND_ENTRY_INCHES) - 1)
    figure.legend(
        handles=handles,
        title=KEY_TITLE,
        loc="outside right upper",
        ncols=math.ceil(len(handles) / per_column),
        fontsize="small",
        title_fontsize="small",
        frameon=False,
    )


def _key_fits_beside(handles: list, image: Image) -> bool:
    """Whether a grid's key fits the figure's height in one column."""
    return (len(handles) + 1) * LEGEND_ENTRY_INCHES <= image.height - TITLE_INCHES


def _key_columns(handles: list, image: Image) -> int:
    """How many columns of a grid's key fit the figure's width."""
    longest = max(len(handle.get_label()) for handle in handles)
    column = LEGEND_HANDLE_INCHES + longest * LEGEND_CHARACTER_INCHES
    return max(1, min(len(handles), int(image.width // column)))


def _shown_note(n_shown: int, n_rows: int) -> str:
    if n_shown == n_rows:
        return f"{n_rows:,} rows"
    return f"{n_shown:,} of {n_rows:,} rows, drawn at random (--max-points, --seed)"


def fit_figure(
    X: np.ndarray,
    shown: np.ndarray,
    view: View,
    model: GaussianMixture,
    image: Image,
    placed: np.ndarray | None = None,
) -> Figure:
    """Rows coloured by most probable component (opacity: its probability), each
    component's mean and its contours at Mahalanobis distance 1 and 2, weights in the key.

    ``X`` are all rows drawn from (for the log-likelihood when the model has no training
    record); ``shown`` indexes those drawn. A row with missing features (NaN) is drawn
    hollow where ``placed`` puts it (its conditional mean), coloured by the probabilities
    of what it has. Contour lines carry gid "contour-k-r".
    """
    from matplotlib.lines import Line2D

    with _style():
        figure, axes = _figure(image)
        rows = X[shown]
        proba = model.predict_proba(rows)
        component, certainty = proba.argmax(axis=1), proba.max(axis=1)
        drawn = view.points(rows if placed is None else placed[shown])
        hollow = np.isnan(rows).any(axis=1)
        means = view.points(model.means)
        full = model.covariance.full_matrices(
            model.covariances, model.n_components, model.n_features
        )
        covariances = view.covariances(full)
        area, opacity = marker_area(len(rows)), marker_opacity(len(rows))
        handles = []
        for k in range(model.n_components):
            colour, marker = group_style(k)
            for gaps, gid in ((False, f"rows-{k}"), (True, f"rows-{k}-with-gaps")):
                mine = (component == k) & (hollow == gaps)
                if not mine.any():
                    continue
                rgba = np.tile(_rgba(colour), (int(mine.sum()), 1))
                rgba[:, 3] = opacity * certainty[mine]
                axes.scatter(
                    drawn[mine, 0],
                    drawn[mine, 1],
                    s=area,
                    marker=marker,
                    rasterized=len(rows) > 5000,
                    zorder=2,
                    gid=gid,
                    **({"facecolors": "none", "edgecolors": rgba} if gaps else {"c": rgba}),
                    linewidths=0.8 if gaps else 0,
                )
            for radius, linestyle in MAHALANOBIS_RADII:
                outline = ellipse(means[k], covariances[k], radius)
                (line,) = axes.plot(
                    outline[:, 0],
                    outline[:, 1],
                    color=_darker(colour),
                    linestyle=linestyle,
                    linewidth=2.0 if radius == 1 else 1.5,
                    zorder=3,
                )
                line.set_gid(f"contour-{k}-{radius:g}")
            axes.scatter(
                means[k, 0],
                means[k, 1],
                marker="X",
                s=150,
                color=colour,
                edgecolors="black",
                linewidths=1.0,
                zorder=4,
                gid=f"mean-{k}",
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    color=_darker(colour),
                    marker=marker,
                    markerfacecolor=colour,
                    markeredgecolor=colour,
                    linestyle="-",
                    label=f"{_component_name(model, k)}: {model.weights[k]:.3f}",
                )
            )
        handles += [
            Line2D([], [], color="0.2", linestyle=style, label=f"Mahalanobis distance {r:g}")
            for r, style in MAHALANOBIS_RADII
        ]
        handles.append(
            Line2D(
                [],
                [],
                color="0.6",
                marker="X",
                markersize=9,
                markeredgecolor="black",
                linestyle="none",
                label="component mean",
            )
        )
        _legend(axes, handles, "most probable component\n(paler: less sure)\nand its mixing weight")
        info = model.fit_info
        if info is not None:
            likelihood = f"log-likelihood {info.log_likelihood:.6g} (fit)"
        else:
            likelihood = f"log-likelihood {float(model.score_samples(X).sum()):.6g} (these rows)"
        title = (
            f"{model.n_components} {model.covariance_type} "
            f"component{'s' if model.n_components > 1 else ''}, {likelihood}"
        )
        subtitle = "\n".join(p for p in (view.description, _shown_note(len(rows), len(X))) if p)
        _titles(figure, axes, title, subtitle)
        axes.set_xlabel(view.labels[0])
        axes.set_ylabel(view.labels[1])
        if view.projected:
            axes.set_aspect("equal", adjustable="datalim")  # a rotation: keep distances true
    return figure


def data_figure(
    X: np.ndarray,
    shown: np.ndarray,
    view: View,
    image: Image,
    *,
    source: str,
    labels: tuple[str, Sequence[Any]] | None = None,
) -> Figure:
    """The rows alone; ``labels`` = (column name, a value per row of X) colours them."""
    from matplotlib.lines import Line2D

    with _style():
        figure, axes = _figure(image)
        drawn = view.points(X[shown])
        area = marker_area(len(shown))
        notes = [_shown_note(len(shown), len(X))]
        groups: list[tuple[str, np.ndarray]] = []
        if labels is not None:
            name, values = labels
            values = np.array([_label(v) for v in values], dtype=object)[shown]
            present = [v for v in values if v is not None]
            categories = sorted(set(present), key=_category_key)
            if len(categories) > MAX_LABELS:
                notes.append(f"'{name}' has {len(categories)} values: too many to colour")
            else:
                notes.append(f"colour: {name}")
                groups = [(str(c), np.array([v == c for v in values], bool)) for c in categories]
                missing = np.array([v is None for v in values], bool)
                if missing.any():
                    groups.append(("(empty)", missing))
        if not groups:
            axes.scatter(
                drawn[:, 0],
                drawn[:, 1],
                s=area,
                color=OKABE_ITO[0],
                alpha=marker_opacity(len(shown)),
                linewidths=0,
                rasterized=len(shown) > 5000,
            )
        handles = []
        for index, (label, mine) in enumerate(groups):
            colour, marker = group_style(index) if label != "(empty)" else ("0.6", "o")
            axes.scatter(
                drawn[mine, 0],
                drawn[mine, 1],
                s=area,
                color=colour,
                marker=marker,
                alpha=marker_opacity(len(shown)),
                linewidths=0,
                rasterized=len(shown) > 5000,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    color=colour,
                    marker=marker,
                    linestyle="none",
                    label=f"{label} ({int(mine.sum()):,} rows)",
                )
            )
        if handles:
            _legend(axes, handles, labels[0])
        subtitle = "\n".join(p for p in (view.description, "; ".join(notes)) if p)
        _titles(figure, axes, f"the data in {source}", subtitle)
        axes.set_xlabel(view.labels[0])
        axes.set_ylabel(view.labels[1])
        if view.projected:
            axes.set_aspect("equal", adjustable="datalim")
    return figure


def _label(value: Any) -> Any:
    """A label cell, with NaN read as empty like null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _category_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order before anything else in text order."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


# ------------------------------------------------------------- covariance structures


@dataclass(frozen=True)
class Structure:
    """How a select-k grid draws one covariance structure, named as R mclust names it."""

    name: str  # mclust's: EII ... VVV, or E and V for one feature
    alias: str  # scikit-learn's name for the same structure, or ""
    colour: str
    marker: str

    @property
    def label(self) -> str:
        """The legend's name: mclust's, with scikit-learn's beside it ("VVV (full)")."""
        return f"{self.name} ({self.alias})" if self.alias else self.name


# One fixed style per structure, in mclust's order, so a structure looks the same in every
# grid whatever else the grid holds. mclust's names read volume, shape, orientation (Equal,
# Variable, Identity); neighbours in this order differ in volume alone, so each such pair
# shares a hue, dark for equal volume and light for variable. Every structure has a colour
# and a marker of its own (the marker tells apart what a colour-blind reader cannot);
# E and V, mclust's names for one feature, have a hue of their own too. Markers are all
# filled shapes: a hollow marker means a degenerate fit.
STRUCTURES: dict[str, Structure] = {
    s.name: s
    for s in (
        Structure("EII", "", "#3B3B3B", "o"),
        Structure("VII", "spherical", "#9A9A9A", "s"),
        Structure("EEI", "", "#0072B2", "^"),
        Structure("VEI", "", "#56B4E9", "v"),
        Structure("EVI", "", "#A6400A", "D"),
        Structure("VVI", "diag", "#F08A3C", "P"),
        Structure("EEE", "tied", "#006E50", "X"),
        Structure("VEE", "", "#3DC495", "<"),
        Structure("EVE", "", "#882255", ">"),
        Structure("VVE", "", "#D070A8", "p"),
        Structure("EEV", "", "#7A5A00", "h"),
        Structure("VEV", "", "#D4AA2A", "*"),
        Structure("EVV", "", "#4B2C8C", "d"),
        Structure("VVV", "full", "#9C82D9", "H"),
        Structure("E", "", "#8E1B1B", "o"),  # the shapes of EII and VII, which
        Structure("V", "", "#E0676F", "s"),  # select-k fits for E and V
    )
}
# Every name a table may give a structure, in lower case: mclust's and scikit-learn's.
_STRUCTURE_NAMES = {n.lower(): s for s in STRUCTURES.values() for n in (s.name, s.alias) if n}


def find_structure(name: Any) -> Structure | None:
    """The structure a table's cell names (mclust's or scikit-learn's name, any case)."""
    if not isinstance(name, str):
        return None
    return _STRUCTURE_NAMES.get(name.strip().lower())


def _structure(row: int, covariance_type: Any, model: Any, source: str) -> Structure:
    """A grid row's structure: by its ``model`` cell (mclust's name) when the table has
    one, else by its ``covariance_type`` (tables written before the model column)."""
    if model is None or not str(model).strip():
        column, value = "covariance_type", covariance_type
    else:
        column, value = "model", model
    found = find_structure(value)
    if found is None:
        known = ", ".join(n for n in STRUCTURES if len(n) == 3)
        raise UserError(
            f"{column} in {source} row {row + 1} is {value!r}, not a covariance structure "
            f"gmmcli knows ({known}, E, V or scikit-learn's spherical, diag, tied, full); "
            "write the grid with gmmcli select-k --table"
        )
    return found


GRID_COLUMNS = ("n_components", "covariance_type", "criterion", "degenerate", "status", "best")
CRITERION_LABELS = {
    "bic": "BIC (lower is better)",
    "aic": "AIC (lower is better)",
    "icl": "ICL (lower is better)",
    "cv": "held-out mean log-likelihood (higher is better)",
}


def criterion_name(columns: dict[str, list]) -> str | None:
    """Which criterion the grid was ranked by: the column its ``criterion`` copies."""
    chosen = columns["criterion"]
    if all(value is None for value in chosen):
        return None
    for name in CRITERION_LABELS:
        if name in columns and all(
            c is None or c == v for c, v in zip(chosen, columns[name], strict=True)
        ):
            return name
    return None


def grid_rows(columns: dict[str, list], source: str) -> list[dict[str, Any]]:
    """The rows of a select-k grid, checked: K a whole number, criterion a number or None,
    each row's covariance structure one gmmcli knows (in ``structure``), and in a grid for
    each class (select-k --label-column) the row's class as text (in ``class``, else None)."""
    missing = [name for name in GRID_COLUMNS if name not in columns]
    if missing:
        raise UserError(
            f"{source} is not a select-k grid (no column '{missing[0]}'); "
            "write one with gmmcli select-k --table"
        )
    models = columns.get("model", [None] * len(columns["criterion"]))
    classes = columns.get("class")
    rows = []
    for i in range(len(columns["criterion"])):
        k, value = columns["n_components"][i], columns["criterion"][i]
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UserError(
                f"n_components in {source} row {i + 1} is {k!r}, not a positive whole number; "
                "write the grid with gmmcli select-k --table"
            )
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(
                f"criterion in {source} row {i + 1} is {value!r}, not a number; "
                "write the grid with gmmcli select-k --table"
            )
        rows.append(
            {
                "class": None if classes is None else _class_name(i, classes[i], source),
                "n_components": k,
                "structure": _structure(i, columns["covariance_type"][i], models[i], source),
                "criterion": None if value is None or math.isnan(value) else float(value),
                "degenerate": _flag(columns["degenerate"][i]),
                "status": "" if columns["status"][i] is None else str(columns["status"][i]),
                "best": _flag(columns["best"][i]),
            }
        )
    if not rows:
        raise UserError(f"{source} has no rows; write a grid with gmmcli select-k --table")
    return rows


def _class_name(row: int, value: Any, source: str) -> str:
    """A class grid's class cell as text (plot reads a CSV's as it was written)."""
    text = "" if _label(value) is None else str(value).strip()
    if not text:
        raise UserError(
            f"class in {source} row {row + 1} is empty, and a grid for each class names the "
            "class of every row; write the grid with gmmcli select-k --label-column --table"
        )
    return text


def _flag(value: Any) -> bool:
    """A true/false cell as read from CSV or Parquet (bool, 0/1, or text)."""
    return value is True or (value is not None and str(value).strip().lower() in ("1", "true"))


def class_grids(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A grid's rows by class, the classes in the order they first appear ({} for a grid
    with no class column)."""
    return by_class((row["class"], row) for row in rows if row["class"] is not None)


def shared_structure(columns: dict[str, list], rows: list[dict[str, Any]]) -> bool:
    """Whether a grid for each class lists the same points under every class, as select-k
    --shared-structure writes one: each point of a structure shared by every class under
    each class, every cell alike, its criteria the whole model's (the console shows such
    a grid once, too)."""
    others = [values for name, values in columns.items() if name != "class"]
    cells = zip(rows, zip(*others, strict=True), strict=True)
    return one_shared_grid(by_class((row["class"], tuple(map(_label, c))) for row, c in cells))


def panel_grid(n_panels: int, image: Image) -> tuple[int, int]:
    """(rows, columns) of ``n_panels`` panels, no row empty: the layout whose panels are
    nearest 4:3, then the one of fewer rows (at the default 8x6: 2 side by side, 3 and 4
    two by two, 10 three rows of four; in a 12x2 strip, 3 in a row)."""

    def misfit(rows: int, columns: int) -> float:
        panel = (image.width / columns) / (image.height / rows)
        return abs(math.log(panel / (4 / 3)))

    layouts = [(math.ceil(n_panels / columns), columns) for columns in range(1, n_panels + 1)]
    return min(layouts, key=lambda layout: (round(misfit(*layout), 9), layout[0]))


def grid_figure(columns: dict[str, list], image: Image, *, source: str) -> Figure:
    """A select-k grid: the criterion against K, one line per covariance structure; a grid
    for each class (select-k --label-column) as one such panel per class, in the table's
    order of the classes, each titled by its class with its best point below the title.

    Each structure has its own colour and marker (``STRUCTURES``), keyed in mclust's order.
    Degenerate points are hollow, the best point is ringed (the rows the table marks best:
    select-k ranked them, by class in a grid for each class), and points without a value
    (failed fits) are listed under the plot with their status. A structure's line carries
    gid "line-NAME" (mclust's name) and its sound points as markers; its hollow points are
    the collection "degenerate-NAME", the ring "best". A grid of a structure shared by every
    class (shared_structure()) is drawn once, as a grid of no classes: its criteria and its
    best point are the whole model's.
    """
    rows = grid_rows(columns, source)
    if any(row["criterion"] is None and row["status"] == "ok" for row in rows):  # (ranked: all)
        raise UserError(
            f"{source} is a grid not yet ranked (its select-k run stopped before the end); "
            "finish it with gmmcli select-k --table --resume, then plot it"
        )
    name = criterion_name(columns)
    grids = class_grids(rows)
    with _style():
        if shared_structure(columns, rows):
            return _grid_picture(next(iter(grids.values())), name, image, shared=len(grids))
        if grids:
            return _class_grids_picture(grids, name, image)
        return _grid_picture(rows, name, image)


def _grid_picture(
    rows: list[dict[str, Any]], name: str | None, image: Image, *, shared: int = 0
) -> Figure:
    """One grid on one plot; ``shared``: the number of classes whose one structure it is."""
    figure, axes = _figure(image)
    best = _draw_grid(axes, rows)
    _grid_legend(figure, axes, _grid_key(rows), image)
    axes.set_xlabel("number of components K")
    axes.set_ylabel(CRITERION_LABELS.get(name, "criterion"))
    subtitle = _best_note(best, name)
    if shared:
        note = (
            f"K components in each of {shared} classes, one structure shared by all; "
            "the whole model's criteria"
        )
        subtitle += "\n" + textwrap.fill(note, int(image.width / SUBTITLE_CHARACTER_INCHES))
    _titles(figure, axes, _grid_title(name), subtitle)
    _note_failed(figure, rows)
    return figure


def _class_grids_picture(
    by_class: dict[str, list[dict[str, Any]]], name: str | None, image: Image
) -> Figure:
    """A panel per class (panel_grid()), one key and one criterion's label for them all."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import offset_copy

    n_rows, n_columns = panel_grid(len(by_class), image)
    figure = Figure(figsize=(image.width, image.height), dpi=image.dpi, layout="constrained")
    panels = figure.add_gridspec(n_rows, n_columns)
    for i, (label, rows) in enumerate(by_class.items()):
        axes = _axes(figure, panels[divmod(i, n_columns)])
        best = _draw_grid(axes, rows)
        axes.set_title(label, fontsize="medium", pad=PANEL_TITLE_PAD)
        axes.text(  # under the title, over the plot: the title's padding leaves it room
            0.5,
            1.0,
            _best_note(best, name, short=True),
            transform=offset_copy(axes.transAxes, figure, y=3, units="points"),
            ha="center",
            va="bottom",
            fontsize="x-small",
            color="0.3",
            gid="best-note",
        ).set_in_layout(False)  # the title's padding holds it; a long one may not narrow the plot
        if i + n_columns >= len(by_class):  # no panel under it
            axes.set_xlabel("number of components K" if n_columns < 3 else "K")
    every = [row for rows in by_class.values() for row in rows]
    _panels_legend(figure, _grid_key(every), image)
    figure.suptitle(f"{_grid_title(name)}, a grid for each class", fontsize="large")
    figure.supylabel(CRITERION_LABELS.get(name, "criterion"))
    _note_failed(figure, every, by_class=True)
    _require_room(figure, (n_rows, n_columns), image)
    return figure


def _require_room(figure: Figure, shape: tuple[int, int], image: Image) -> None:
    """A UserError naming a --size that fits when the panels of a grid of ``shape`` (rows,
    columns) leave a plot too small to read (MIN_PANEL_INCHES), or none at all (then
    matplotlib's layout gives up and overlaps them)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.draw_without_rendering()  # lays the figure out
    collapsed = any("collapsed" in str(warning.message) for warning in caught)
    boxes = [axes.get_position() for axes in figure.axes]  # as fractions of the figure
    narrowest = min(box.width for box in boxes) * image.width
    lowest = min(box.height for box in boxes) * image.height
    if not collapsed and narrowest >= MIN_PANEL_INCHES[0] and lowest >= MIN_PANEL_INCHES[1]:
        return
    width = max(image.width, PANEL_INCHES[0] * shape[1] + 2.0)
    height = max(image.height, PANEL_INCHES[1] * shape[0] + 1.5)
    raise UserError(
        f"{shape[0]} x {shape[1]} panels, a grid for each class, are too small to read in "
        f"{image.width:g}x{image.height:g} inches; make the picture larger, such as "
        f"--size {width:g}x{height:g}"
    )


def _draw_grid(axes: Axes, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A grid's lines, hollow points and rings on ``axes`` (grid_figure()); the rows
    ringed as best."""
    from matplotlib.ticker import MaxNLocator

    present = {row["structure"].name for row in rows}
    for structure in (s for s in STRUCTURES.values() if s.name in present):
        colour, marker, kind = structure.colour, structure.marker, structure.name
        mine = sorted(
            (row for row in rows if row["structure"] is structure),
            key=lambda row: row["n_components"],
        )
        k = np.array([row["n_components"] for row in mine], dtype=float)
        value = np.array([np.nan if row["criterion"] is None else row["criterion"] for row in mine])
        hollow = np.array([row["degenerate"] for row in mine], dtype=bool)
        axes.plot(  # NaN breaks the line
            k,
            value,
            color=colour,
            linewidth=1.6,
            marker=marker,
            markersize=GRID_MARKER_SIZE,
            markevery=np.flatnonzero(~hollow & np.isfinite(value)).tolist(),
            markeredgewidth=1.5,
            zorder=2,
            gid=f"line-{kind}",
        )
        chosen = hollow & np.isfinite(value)
        axes.scatter(
            k[chosen],
            value[chosen],
            s=GRID_MARKER_SIZE**2,
            marker=marker,
            facecolors="white",
            edgecolors=colour,
            linewidths=1.5,
            zorder=3,
            gid=f"degenerate-{kind}",
        )
    best = [row for row in rows if row["best"] and row["criterion"] is not None]
    for row in best:
        axes.scatter(
            row["n_components"],
            row["criterion"],
            s=380,
            marker="o",
            facecolors="none",
            edgecolors="black",
            linewidths=1.8,
            zorder=4,
            clip_on=False,  # whole, at the edge of the axes too
            gid="best",
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    ks = [row["n_components"] for row in rows]
    if min(ks) == max(ks):  # one K: its tick alone, not fractions around it
        axes.set_xlim(ks[0] - 1, ks[0] + 1)
        axes.set_xticks([ks[0]])
    return best


def _grid_key(rows: list[dict[str, Any]]) -> list:
    """The key's entries: each structure of the rows (in mclust's order), then the
    degenerate and the best point's look."""
    from matplotlib.lines import Line2D

    present = {row["structure"].name for row in rows}
    handles = [
        Line2D(
            [],
            [],
            color=structure.colour,
            marker=structure.marker,
            markersize=GRID_MARKER_SIZE,
            label=structure.label,
        )
        for structure in STRUCTURES.values()
        if structure.name in present
    ]
    return [
        *handles,
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markerfacecolor="white",
            linestyle="none",
            label="degenerate (hollow)",
        ),
        Line2D(
            [],
            [],
            color="black",
            marker="o",
            markerfacecolor="none",
            markersize=14,
            linestyle="none",
            label="best",
        ),
    ]


def _grid_title(name: str | None) -> str:
    label = name.upper() if name in ("bic", "aic", "icl") else "held-out likelihood"
    return f"model selection by {label}" if name else "model selection"


def _best_note(best: list[dict[str, Any]], name: str | None, *, short: bool = False) -> str:
    """The ringed point: "best: K = 2, VVV (full), BIC 700" (``short``: mclust's name of
    the structure alone), or that there is none."""
    if not best:
        return "no best point"
    row = best[0]
    structure = row["structure"].name if short else row["structure"].label
    note = f"best: K = {row['n_components']}, {structure}"
    if name:
        note += f", {name.upper() if name != 'cv' else 'CV'} {row['criterion']:.6g}"
    return note


def _note_failed(figure: Figure, rows: list[dict[str, Any]], *, by_class: bool = False) -> None:
    """The points without a value listed under the plot (each with its class: ``by_class``)."""
    failed = [row for row in rows if row["criterion"] is None]
    if not failed:
        return
    lines = [f"{len(failed)} point{'s' if len(failed) > 1 else ''} without a value:"]
    for row in failed[:MAX_FAILED_LISTED]:
        status = " ".join((row["status"] or "no value").split())
        if len(status) > 100:
            status = status[:99] + "…"
        where = f"class {row['class']}, " if by_class else ""
        lines.append(f"{where}K = {row['n_components']}, {row['structure'].label}: {status}")
    if len(failed) > MAX_FAILED_LISTED:
        lines.append(f"… and {len(failed) - MAX_FAILED_LISTED} more (see the table)")
    figure.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize="small", color="0.25")


def _darker(colour: str) -> tuple[float, float, float]:
    """The colour mixed with 40% black: contours stand out on a cloud of their own colour."""
    from matplotlib.colors import to_rgb

    return tuple(0.6 * c for c in to_rgb(colour))


def _rgba(colour: str) -> np.ndarray:
    from matplotlib.colors import to_rgba

    return np.array(to_rgba(colour))


def save(figure: Figure, image: Image) -> None:
    """Write the figure atomically; no dates in SVG or PDF, so reruns give the same bytes."""
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(image.format)
    with _style(), atomic_writer(image.path) as handle:
        figure.savefig(handle, format=image.format, dpi=image.dpi, metadata=metadata)
