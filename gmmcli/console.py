"""What the command line shows a person, on stderr through rich: notes, warnings, errors,
progress, the fit summary and the select-k grid. stdout carries data only."""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gmmcli.core.model import Classes, GaussianMixture
from gmmcli.core.options import Grid
from gmmcli.core.select import GridPoint, by_class, on_edge, one_shared_grid
from gmmcli.errors import GMMWarning
from gmmcli.flags import flag
from gmmcli.inputs import Advance

LOG_WIDTH = 160


def error(message: str) -> None:
    """One error line (the message taken literally, not as markup; a line break in it,
    from a column name for instance, shown as \\n)."""
    line = message.replace("\r", "\\r").replace("\n", "\\n")
    Console(stderr=True).print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


class Reporter:
    """Everything a person reads: on stderr, silenced by --quiet (except errors)."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True, quiet=quiet)
        self.log = not self.console.is_terminal  # one line a message, wrapped on a terminal
        if self.log:
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
        self.console.print(escape(text), highlight=False, soft_wrap=self.log)

    def notice(self, warning: GMMWarning) -> None:
        """A notice about the input, as a note naming flags."""
        self.note(warning.describe(flag))

    def warn(self, text: str) -> None:
        self.console.print(
            f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=self.log
        )

    @contextlib.contextmanager
    def captured_warnings(self) -> Iterator[None]:
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
    def progress(self, total: int, label: str) -> Iterator[Advance]:
        """A transient bar, only when stderr is a terminal; yields an update callback."""
        with self._bar(TimeElapsedColumn()) as bar:
            task = bar.add_task(label, total=total)
            yield lambda advance, text: bar.update(task, advance=advance, description=text)

    @contextlib.contextmanager
    def grid_progress(self, total: int, criterion: str) -> Iterator[Callable[[GridPoint], None]]:
        """select-k's progress over ``total`` points, told of each as it is fitted: on a
        terminal a bar with the time left, otherwise a line per point (none if quiet)."""
        if self.quiet or self.log:
            done = itertools.count(1)
            yield lambda point: self.note(
                f"select-k {next(done)}/{total}: {_point_line(point, criterion)}"
            )
            return
        times = (
            TimeElapsedColumn(),
            TextColumn("elapsed"),
            TimeRemainingColumn(),
            TextColumn("left"),
        )
        with self._bar(MofNCompleteColumn(), *times) as bar:
            task = bar.add_task("select-k", total=total)
            yield lambda point: bar.update(
                task,
                advance=1,
                description=f"select-k (K={point.n_components} {point.covariance_type} done)",
            )

    def _bar(self, *columns: ProgressColumn) -> Progress:
        """A transient progress bar, shown only when stderr is a terminal."""
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *columns,
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            disable=self.quiet or self.log,
        )

    def confusion(self, names: list[str], counts: list[list[float]]) -> None:
        """score's table of labels (rows) by predicted classes (columns), in weights."""
        table = Table(title="label (rows) by predicted class (columns)")
        table.add_column("label")
        for name in names:
            table.add_column(escape(name), justify="right")
        for name, row in zip(names, counts, strict=True):
            table.add_row(escape(name), *(f"{count:.6g}" for count in row))
        self.console.print(table)

    def summary(self, model: GaussianMixture) -> None:
        """fit's summary: a table of the components and a line about the fit."""
        info = model.fit_info
        table = Table(title=f"{model.n_components} {model.covariance_type} components")
        classes = model.classes
        table.add_column("component", justify="right")
        if classes is not None:
            table.add_column("class")
        table.add_column("weight", justify="right")
        table.add_column("mean")
        for k in range(model.n_components):
            mean = ", ".join(f"{v:.4g}" for v in model.means[k])
            named = [] if classes is None else [_class_of(classes, k)]
            table.add_row(str(k), *named, f"{model.weights[k]:.4f}", mean)
        self.console.print(table)
        self.note(
            f"log-likelihood {info.log_likelihood:.6g} (mean {info.mean_log_likelihood:.6g}), "
            f"BIC {info.bic:.6g}, {info.n_iter} iterations, "
            f"converged: {'yes' if info.converged else 'no'}, "
            f"degenerate: {'yes' if info.degenerate else 'no'}"
        )

    def class_grids(
        self, points: list[tuple[str, GridPoint]], grid: Grid, joined: GaussianMixture | None
    ) -> None:
        """select-k with labels: each class's grid (grid()) under its name, then a line
        about the model ``joined`` from their winners; or the one grid of a structure
        shared by every class."""
        grids = by_class(points)
        if one_shared_grid(grids):
            self.note("every class (one structure shared):")
            self.grid(next(iter(grids.values())), grid)
            return
        for label, class_points in grids.items():
            self.note(f"class {label}:")
            self.grid(class_points, grid)
        if joined is not None:
            info = joined.fit_info
            self.note(
                f"the classes joined: log-likelihood {info.log_likelihood:.6g} "
                f"(mean {info.mean_log_likelihood:.6g}), {info.n_parameters} parameters, "
                f"BIC {info.bic:.6g}"
            )

    def grid(self, points: list[GridPoint], grid: Grid) -> None:
        """The selection grid, the winner marked: numbers rounded and statuses cut short,
        the reasons listed below, so that it fits 80 columns on a terminal (a plain table
        of at most PLAIN_WIDTH in a log; the --table file keeps every digit); a warning if
        the winner's K is at the edge of the range tried."""
        table = Table(
            title=f"model selection by {grid.criterion} (winner marked *)",
            box=None if self.log else box.SIMPLE_HEAD,  # its columns apart by one space
            padding=(0, 1) if self.log else 0,
            pad_edge=False,
            show_edge=False,
        )
        criteria = ["log_likelihood", "bic", "aic", "icl"]
        if any(p.cv is not None for p in points):
            criteria.append("cv")
        headers = ["K", "structure", "params", *(HEADERS[c] for c in criteria)]
        for name in [*headers, "iter", "status"]:
            left = name in ("structure", "status")
            table.add_column(name, justify="left" if left else "right", no_wrap=True)
        for p in points:
            table.add_row(
                f"{'*' if p.best else ''}{p.n_components}",
                p.covariance_type,
                "" if p.n_parameters is None else str(p.n_parameters),
                *(_rounded(getattr(p, name), DECIMALS[name]) for name in criteria),
                "" if p.n_iter is None else str(p.n_iter),
                _short_status(p),
                style="bold" if p.best else None,
            )
        width = min(self.console.width, PLAIN_WIDTH) if self.log else self.console.width
        self.console.print(table, width=width)
        for p in points:
            if p.status != "ok" or not p.converged:
                text = f"K={p.n_components} {p.covariance_type}: {_reason(p)}"
                self.console.print(escape(text), width=width, highlight=False)
        best = next((p for p in points if p.best), None)
        if best is not None and on_edge(best, list(grid.k_values)):
            k_values = f"{min(grid.k_values)}..{max(grid.k_values)}"
            self.warn(
                f"the best K ({best.n_components}) is at the edge of the range {k_values}; "
                "widen it with --k-min/--k-max"
            )


PLAIN_WIDTH = 100  # the widest a select-k grid is printed in a log
HEADERS = {"log_likelihood": "log-lik", "bic": "BIC", "aic": "AIC", "icl": "ICL", "cv": "CV"}
# Decimals shown: criteria of the whole data to a tenth, cv (a mean per row) to 1e-4, and
# no more digits than SIGNIFICANT.
DECIMALS = {"log_likelihood": 1, "bic": 1, "aic": 1, "icl": 1, "cv": 4}
SIGNIFICANT = 5


def _rounded(value: float | None, decimals: int) -> str:
    """A number for the screen: at most ``decimals`` places, fewer where they would make
    more than SIGNIFICANT digits."""
    if value is None:
        return ""
    digits = len(f"{abs(value):.0f}")
    return f"{value:.{max(0, min(decimals, SIGNIFICANT - digits))}f}"


def _short_status(point: GridPoint) -> str:
    """ok, not conv. (ok, but EM hit its iteration cap), degenerate or failed."""
    if point.status == "ok":
        return "ok" if point.converged else "not conv."
    return point.status.split(":")[0]


def _reason(point: GridPoint) -> str:
    """What a short status leaves out."""
    if point.status == "ok":
        return f"did not converge in {point.n_iter} iterations (raise --max-iter)"
    return point.status


def _point_line(point: GridPoint, criterion: str) -> str:
    """A grid point on one line: K, covariance type, status (short: the grid lists the
    reasons), criterion, seconds."""
    value = getattr(point, criterion)
    shown = "" if value is None else f", {criterion} {_rounded(value, DECIMALS[criterion])}"
    return (
        f"K={point.n_components} {point.covariance_type}: {_short_status(point)}{shown}, "
        f"{point.seconds:.1f} s"
    )


def _class_of(classes: Classes, component: int) -> str:
    """A component's class name as a cell (a dash for one of no class)."""
    name = classes.class_of(component)
    return "-" if name is None else escape(name)
