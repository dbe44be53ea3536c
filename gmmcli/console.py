"""What the command line shows a person, on stderr through rich: notes, warnings, errors,
progress, the fit summary and the select-k grid. stdout carries data only."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gmmcli.core.model import GaussianMixture
from gmmcli.core.select import GridPoint
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

    def notice(self, warning: GMMWarning) -> None:
        """A notice about the input, as a note naming flags."""
        self.note(warning.describe(flag))

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

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

    def summary(self, model: GaussianMixture) -> None:
        """fit's summary: a table of the components and a line about the fit."""
        info = model.fit_info
        table = Table(title=f"{model.n_components} {model.covariance_type} components")
        table.add_column("component", justify="right")
        table.add_column("weight", justify="right")
        table.add_column("mean")
        for k in range(model.n_components):
            mean = ", ".join(f"{v:.4g}" for v in model.means[k])
            table.add_row(str(k), f"{model.weights[k]:.4f}", mean)
        self.console.print(table)
        self.note(
            f"log-likelihood {info.log_likelihood:.6g} (mean {info.mean_log_likelihood:.6g}), "
            f"BIC {info.bic:.6g}, {info.n_iter} iterations, "
            f"converged: {'yes' if info.converged else 'no'}, "
            f"degenerate: {'yes' if info.degenerate else 'no'}"
        )

    def grid(self, points: list[GridPoint], criterion: str) -> None:
        """The selection grid as a rich table, the winner marked."""
        grid = Table(title=f"model selection by {criterion} (winner marked *)")
        headers = ["", "K", "covariance", "params", "log-lik", "BIC", "AIC", "ICL"]
        if any(p.cv is not None for p in points):
            headers.append("CV")
        for name in [*headers, "iter", "status"]:
            grid.add_column(name, justify="left" if name in ("covariance", "status") else "right")
        for p in points:
            cells = [
                "*" if p.best else "",
                str(p.n_components),
                p.covariance_type,
                "" if p.n_parameters is None else str(p.n_parameters),
                *(_number(v) for v in (p.log_likelihood, p.bic, p.aic, p.icl)),
            ]
            if "CV" in headers:
                cells.append(_number(p.cv))
            converged = (
                "" if p.n_iter is None else f"{p.n_iter}{'' if p.converged else ' (not converged)'}"
            )
            cells += [converged, p.status]
            grid.add_row(*cells, style="bold" if p.best else None)
        self.console.print(grid)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
